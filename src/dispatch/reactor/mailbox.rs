//! What other threads send to an event loop: [`Command`]s from the
//! server and the pool (a new connection, a connection back from a blocking
//! message, serving's start, room under the limits, the shutdown), [`Signal`]s from connection handles, and the
//! [`Alarm`] that wakes the loop only when it sleeps.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use mio::{Registry, Token, Waker};

use super::timers::Key;
use crate::transport::listener::Accepted;

/// Work for a loop from other threads.
pub(super) enum Command<C> {
    /// A connection the server admitted.
    Accept(Accepted),
    /// A connection back from the pool.
    Return(C),
    /// Serving begins: a loop with a listener of its own starts accepting
    /// on it.
    Listen,
    /// Room has freed under the server's limits: a loop that accepts on
    /// its own listener takes in what waits there.
    Room,
    /// The server shuts down.
    Shutdown,
}

/// Requests from [`ConnHandle`](crate::request::ConnHandle)s.
#[derive(Debug, Clone, Copy)]
pub(super) enum Signal {
    /// Bytes wait in the connection's outlet.
    Flush(Key),
    /// The connection's backlog overflowed.
    Disconnect(Key),
    /// Close the connection after what is queued.
    CloseAfterFlush(Key),
}

/// Wakes a loop when it sleeps.
#[derive(Debug)]
pub(super) struct Alarm {
    waker: Waker,
    /// The loop is about to wait, or waits: a sender rings.
    pub sleeping: AtomicBool,
}

impl Alarm {
    fn ring(&self) {
        if self.sleeping.swap(false, SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake an event loop: {e}");
            }
        }
    }
}

/// Sends signals to a loop, from any thread.
#[derive(Debug, Clone)]
pub(super) struct Notify {
    signals: Sender<Signal>,
    alarm: Arc<Alarm>,
}

impl Notify {
    pub fn signal(&self, signal: Signal) {
        if self.signals.send(signal).is_ok() {
            self.alarm.ring();
        }
    }
}

/// Sends commands to a loop, from any thread.
pub(super) struct LoopHandle<C> {
    commands: Sender<Command<C>>,
    alarm: Arc<Alarm>,
}

impl<C> Clone for LoopHandle<C> {
    fn clone(&self) -> Self {
        LoopHandle {
            commands: self.commands.clone(),
            alarm: Arc::clone(&self.alarm),
        }
    }
}

impl<C> LoopHandle<C> {
    /// Wakes the loop if it sleeps (to look again at what it waits for).
    pub fn wake(&self) {
        self.alarm.ring();
    }

    /// Sends a command; gives it back when the loop has ended.
    pub fn send(&self, command: Command<C>) -> Option<Command<C>> {
        match self.commands.send(command) {
            Ok(()) => {
                self.alarm.ring();
                None
            }
            Err(e) => Some(e.into_inner()),
        }
    }
}

/// A loop's receiving ends and the handles other threads send through.
pub(super) struct Mailbox<C> {
    pub commands: Receiver<Command<C>>,
    pub signals: Receiver<Signal>,
    pub alarm: Arc<Alarm>,
    pub handle: LoopHandle<C>,
    pub notify: Notify,
}

impl<C> Mailbox<C> {
    /// A mailbox whose alarm wakes the poll of `registry` with `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        let alarm = Arc::new(Alarm {
            waker: Waker::new(registry, token)?,
            sleeping: AtomicBool::new(false),
        });
        let (command_tx, commands) = unbounded();
        let (signal_tx, signals) = unbounded();
        Ok(Mailbox {
            commands,
            signals,
            handle: LoopHandle {
                commands: command_tx,
                alarm: Arc::clone(&alarm),
            },
            notify: Notify {
                signals: signal_tx,
                alarm: Arc::clone(&alarm),
            },
            alarm,
        })
    }
}
