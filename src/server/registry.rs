//! The open connections of a server, so that a shutdown can close the idle
//! ones at once and the deadline can cut the rest.
//!
//! Sharded by descriptor number: a connection locks only its own shard, once
//! when it opens and once when it closes, so connections on different threads
//! do not contend. Marking a connection idle or busy is one atomic store, with
//! no lock. A descriptor leaves the registry before it is closed, and the
//! cuts hold the shard's lock while they shut a connection down, so they
//! never touch a descriptor that was closed and reused.

use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::Arc;

use parking_lot::Mutex;
use socket2::SockRef;

const SHARDS: usize = 64;

/// A message is in progress (or the handler does not say).
const BUSY: u8 = 0;
/// Waiting for the next message: a shutdown closes it at once.
const IDLE: u8 = 1;
/// Closed for reading by a shutdown while idle.
const CUT: u8 = 2;

/// One open connection, as the registry knows it.
#[derive(Debug)]
pub(crate) struct Tracked {
    fd: RawFd,
    state: AtomicU8,
}

impl Tracked {
    /// Says the connection waits for its next message.
    pub fn set_idle(&self) {
        let _ = self.state.compare_exchange(BUSY, IDLE, SeqCst, SeqCst);
    }

    /// Says a message is in progress; false when a shutdown closed the
    /// connection while it was idle.
    pub fn set_busy(&self) -> bool {
        match self.state.compare_exchange(IDLE, BUSY, SeqCst, SeqCst) {
            Ok(_) => true,
            Err(state) => state == BUSY,
        }
    }

    /// True once a shutdown closed the connection while it was idle.
    pub fn is_cut(&self) -> bool {
        self.state.load(SeqCst) == CUT
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    shards: Box<[Mutex<Vec<Arc<Tracked>>>]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, fd: RawFd) -> &Mutex<Vec<Arc<Tracked>>> {
        &self.shards[fd.unsigned_abs() as usize % SHARDS]
    }

    /// Records an open connection, busy.
    pub fn insert(&self, fd: RawFd) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked {
            fd,
            state: AtomicU8::new(BUSY),
        });
        self.shard(fd).lock().push(Arc::clone(&tracked));
        tracked
    }

    /// Forgets a connection; call it before the descriptor is closed.
    pub fn remove(&self, tracked: &Arc<Tracked>) {
        let mut shard = self.shard(tracked.fd).lock();
        if let Some(i) = shard.iter().position(|open| Arc::ptr_eq(open, tracked)) {
            shard.swap_remove(i);
        }
    }

    /// Closes every idle connection for reading, which ends a handler's
    /// wait for the next message (it reads the end of input) while it can
    /// still write a last word. Returns how many it closed.
    pub fn cut_idle(&self) -> usize {
        self.each(|tracked| {
            tracked
                .state
                .compare_exchange(IDLE, CUT, SeqCst, SeqCst)
                .is_ok()
                .then_some(Shutdown::Read)
        })
    }

    /// Shuts every connection down in both directions, which wakes a
    /// handler blocked on it. Returns how many it cut.
    pub fn cut_all(&self) -> usize {
        self.each(|_| Some(Shutdown::Both))
    }

    fn each(&self, how: impl Fn(&Tracked) -> Option<Shutdown>) -> usize {
        let mut cut = 0;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for tracked in shard.iter() {
                let Some(how) = how(tracked) else {
                    continue;
                };
                // SAFETY: `fd` stays open while it is in the registry, and the
                // registry is locked: its owner removes it before closing it.
                let fd = unsafe { BorrowedFd::borrow_raw(tracked.fd) };
                if SockRef::from(&fd).shutdown(how).is_ok() {
                    cut += 1;
                }
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn cut_wakes_a_blocked_reader() {
        let registry = Arc::new(Registry::default());
        let (mut a, _b) = UnixStream::pair().unwrap();
        let tracked = registry.insert(a.as_raw_fd());
        let r = registry.clone();
        let cutter = std::thread::spawn(move || r.cut_all());
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 0);
        assert_eq!(cutter.join().unwrap(), 1);
        registry.remove(&tracked);
        assert_eq!(registry.cut_all(), 0);
    }

    #[test]
    fn only_idle_connections_are_closed_at_once_and_can_still_write() {
        let registry = Registry::default();
        let (mut idle, mut idle_peer) = UnixStream::pair().unwrap();
        let (busy, _busy_peer) = UnixStream::pair().unwrap();
        let idle_entry = registry.insert(idle.as_raw_fd());
        let busy_entry = registry.insert(busy.as_raw_fd());
        idle_entry.set_idle();
        assert_eq!(registry.cut_idle(), 1);
        assert!(idle_entry.is_cut() && !idle_entry.set_busy());
        assert!(busy_entry.set_busy() && !busy_entry.is_cut());
        let mut buf = [0u8; 8];
        assert_eq!(idle.read(&mut buf).unwrap(), 0, "the wait ends");
        idle.write_all(b"bye").unwrap();
        let mut got = [0u8; 3];
        idle_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bye", "a last word still goes out");
        assert_eq!(registry.cut_idle(), 0, "once only");
    }
}
