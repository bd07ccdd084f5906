//! [`LoopOutlet`]: where a [`ConnHandle`](crate::request::ConnHandle) of a
//! reactor connection puts its bytes.
//!
//! A sender (any thread) appends under the outlet's lock and, the first time
//! bytes wait, asks the connection's loop to flush; the loop moves them to the
//! connection's output when it gets to it, so a sender never touches the
//! socket and never waits. The bytes waiting here plus those the connection
//! could not write yet are bounded by the backlog; past it the connection is
//! closed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use parking_lot::Mutex;

use super::mailbox::{Notify, Signal};
use super::timers::Key;
use crate::request::Outlet;

pub(crate) struct LoopOutlet {
    key: Key,
    notify: Notify,
    max_backlog: usize,
    queue: Mutex<Vec<u8>>,
    /// A flush request is on its way to the loop.
    scheduled: AtomicBool,
    /// Bytes the connection holds, not yet written (kept by the loop).
    pub held: AtomicUsize,
    /// No more bytes are taken.
    pub closed: AtomicBool,
}

impl LoopOutlet {
    pub fn new(key: Key, notify: Notify, max_backlog: usize) -> Self {
        LoopOutlet {
            key,
            notify,
            max_backlog: max_backlog.max(1),
            queue: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// The loop takes what waits (swapping buffers: no copy).
    pub fn take_into(&self, out: &mut Vec<u8>) {
        self.scheduled.store(false, SeqCst);
        let mut queue = self.queue.lock();
        if out.is_empty() {
            std::mem::swap(out, &mut queue);
        } else {
            out.extend_from_slice(&queue);
            queue.clear();
        }
        if queue.capacity() > 64 * 1024 {
            *queue = Vec::new();
        }
    }
}

impl Outlet for LoopOutlet {
    fn send(&self, bytes: &[u8]) -> bool {
        if self.closed.load(SeqCst) {
            return false;
        }
        let mut queue = self.queue.lock();
        if queue.len() + self.held.load(SeqCst) + bytes.len() > self.max_backlog {
            drop(queue);
            if !self.closed.swap(true, SeqCst) {
                log::info!(
                    "a client is not reading: over {} bytes wait for it; disconnecting it",
                    self.max_backlog
                );
                self.notify.signal(Signal::Disconnect(self.key));
            }
            return false;
        }
        queue.extend_from_slice(bytes);
        drop(queue);
        if !self.scheduled.swap(true, SeqCst) {
            self.notify.signal(Signal::Flush(self.key));
        }
        true
    }

    fn close(&self) {
        if !self.closed.swap(true, SeqCst) {
            self.notify.signal(Signal::CloseAfterFlush(self.key));
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }
}
