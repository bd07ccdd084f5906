//! [`Flusher`]: one thread per server that finishes writes the kernel could
//! not take at once, for threads-mode connections whose owner is blocked in
//! a read.
//!
//! In threads mode a connection's thread waits in `recv` for its client. When
//! another thread sends to that connection (a chat room's broadcast) and the
//! socket buffer is full, the rest must go out when the client reads, without
//! holding up the sender and without waking the owner. The flusher watches
//! such sockets for writability (edge-triggered `epoll` through `mio`,
//! registered only while bytes wait) and writes what waits. It starts with
//! the first connection that needs it and stops with the server.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Weak};
use std::thread;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::Mutex;

const WAKE: Token = Token(usize::MAX);

/// Something with bytes waiting for a socket to become writable.
pub(crate) trait Flushable: Send + Sync {
    /// Writes what waits without blocking, under the owner's lock; returns
    /// true when nothing waits any more (the flusher then stops watching),
    /// or when the connection is closed.
    fn flush_ready(&self) -> bool;
}

/// The flusher thread and its registrations.
pub(crate) struct Flusher {
    registry: Registry,
    waker: Waker,
    watched: Mutex<Slots>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<(RawFd, Weak<dyn Flushable>)>>,
    free: Vec<usize>,
    stopping: bool,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start() -> io::Result<Arc<Flusher>> {
        let poll = Poll::new()?;
        let flusher = Arc::new(Flusher {
            registry: poll.registry().try_clone()?,
            waker: Waker::new(poll.registry(), WAKE)?,
            watched: Mutex::new(Slots::default()),
            thread: Mutex::new(None),
        });
        let running = Arc::clone(&flusher);
        let thread = thread::Builder::new()
            .name("socketserver-flusher".into())
            .spawn(move || running.run(poll))?;
        *flusher.thread.lock() = Some(thread);
        Ok(flusher)
    }

    /// Watches `fd` until `what` has written everything; returns the slot
    /// to [`forget`](Flusher::forget) it by. The caller holds the lock that
    /// `what` flushes under, so the first event waits for it.
    pub fn watch(&self, fd: RawFd, what: Weak<dyn Flushable>) -> io::Result<usize> {
        let mut slots = self.watched.lock();
        if slots.stopping {
            return Err(io::Error::other("the server has stopped"));
        }
        let slot = match slots.free.pop() {
            Some(slot) => {
                slots.entries[slot] = Some((fd, what));
                slot
            }
            None => {
                slots.entries.push(Some((fd, what)));
                slots.entries.len() - 1
            }
        };
        let registered =
            self.registry
                .register(&mut SourceFd(&fd), Token(slot), Interest::WRITABLE);
        if let Err(e) = registered {
            slots.entries[slot] = None;
            slots.free.push(slot);
            return Err(e);
        }
        Ok(slot)
    }

    /// Stops watching a slot; its descriptor must still be open. Called
    /// under the lock of what was watched, before the descriptor closes.
    pub fn forget(&self, slot: usize) {
        let mut slots = self.watched.lock();
        if let Some(Some((fd, _))) = slots.entries.get(slot) {
            let _ = self.registry.deregister(&mut SourceFd(fd));
            slots.entries[slot] = None;
            slots.free.push(slot);
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(&self) {
        self.watched.lock().stopping = true;
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }

    fn run(&self, mut poll: Poll) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("the flusher cannot wait for sockets: {e}");
                return;
            }
            if self.watched.lock().stopping {
                return;
            }
            for event in events.iter() {
                let slot = event.token().0;
                if slot == WAKE.0 {
                    continue;
                }
                let what = match self.watched.lock().entries.get(slot) {
                    Some(Some((_, what))) => what.upgrade(),
                    _ => None,
                };
                // `flush_ready` forgets the slot itself (under its own
                // lock) when it is done.
                if let Some(what) = what {
                    what.flush_ready();
                }
            }
        }
    }
}
