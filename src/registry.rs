//! The open connections of a server, so that the shutdown deadline can cut them.
//!
//! Sharded by descriptor number: a connection locks only its own shard, once
//! when it opens and once when it closes, so connections on different threads
//! do not contend. A descriptor leaves the registry before it is closed, and
//! [`Registry::cut_all`] holds the shard's lock while it shuts a connection
//! down, so it never touches a descriptor that was closed and reused.

use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};

use parking_lot::Mutex;
use socket2::SockRef;

const SHARDS: usize = 64;

#[derive(Debug)]
pub(crate) struct Registry {
    shards: Box<[Mutex<Vec<RawFd>>]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, fd: RawFd) -> &Mutex<Vec<RawFd>> {
        &self.shards[fd.unsigned_abs() as usize % SHARDS]
    }

    /// Records an open connection.
    pub fn insert(&self, fd: RawFd) {
        self.shard(fd).lock().push(fd);
    }

    /// Forgets a connection; call it before the descriptor is closed.
    pub fn remove(&self, fd: RawFd) {
        let mut shard = self.shard(fd).lock();
        if let Some(i) = shard.iter().position(|&open| open == fd) {
            shard.swap_remove(i);
        }
    }

    /// Shuts every recorded connection down in both directions, which wakes
    /// a handler blocked on it. Returns how many it cut.
    pub fn cut_all(&self) -> usize {
        let mut cut = 0;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for &fd in shard.iter() {
                // SAFETY: `fd` stays open while it is in the registry, and the
                // registry is locked: its owner removes it before closing it.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                if SockRef::from(&fd).shutdown(Shutdown::Both).is_ok() {
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
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn cut_wakes_a_blocked_reader() {
        let registry = std::sync::Arc::new(Registry::default());
        let (mut a, _b) = UnixStream::pair().unwrap();
        registry.insert(a.as_raw_fd());
        let r = registry.clone();
        let cutter = std::thread::spawn(move || {
            // The reader below blocks until the cut.
            r.cut_all()
        });
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 0);
        assert_eq!(cutter.join().unwrap(), 1);
        registry.remove(a.as_raw_fd());
        assert_eq!(registry.cut_all(), 0);
    }
}
