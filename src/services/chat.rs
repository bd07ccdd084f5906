//! chat: a chat room over lines.
//!
//! # Protocol
//!
//! Every client is a member of one room. A member sends UTF-8 lines ending in
//! `\n` (`\r\n` accepted; bytes that are not UTF-8 become U+FFFD); each line
//! goes to every other member as `NAME: LINE`. A member's NAME starts as its
//! address, `HOST:PORT` (`[HOST]:PORT` for IPv6; `unix#N` on a Unix socket).
//! The room tells the others when someone arrives, leaves, or changes name;
//! a member gets no notice of its own arrival:
//!
//! ```text
//! * 127.0.0.1:50312 joined
//! 127.0.0.1:50312: hi all
//! * 127.0.0.1:50312 is now alice
//! alice: hello again
//! * alice left
//! ```
//!
//! `/nick NEW` changes the sender's name. An empty name, or one that another
//! member uses, is refused, and only the sender is told (`* ...`). A line over
//! the limit (8 KiB by default) is answered `error: line too long` and the
//! member is disconnected.
//!
//! # A slow member never stalls the room
//!
//! Sending a line to the room only queues it for each member: each member has
//! its own writer thread that drains its queue to its socket, and no lock is
//! held while writing to a socket. A member's queue is bounded
//! ([`ChatRoom::max_backlog`], 1 MiB by default): a member that stops reading
//! while the room keeps talking is disconnected when its queue overflows, and
//! the others see `* NAME left`. A member that only listens is not cut for
//! being quiet (unless the server has an idle timeout).
//!
//! When the server shuts down, every member is told
//! `* the server is shutting down` and its connection is closed, so the
//! server stops at once rather than at its shutdown deadline.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::protocol::line::{read_line, Line};
use crate::{Address, RequestHandler, ServerHandle, StreamRequest, StreamWriter};

/// The default bound of a member's outgoing queue, in bytes.
pub const DEFAULT_MAX_BACKLOG: usize = 1 << 20;

/// The default longest line, in bytes.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

/// The answer to a line over the limit, before the member is disconnected.
pub const LINE_TOO_LONG: &str = "error: line too long";

/// What members are told when the server shuts down, before it closes their
/// connections.
pub const SHUTTING_DOWN: &str = "* the server is shutting down\n";

/// How often an idle member's writer looks whether the server is shutting
/// down.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// How long a leaving member's last messages may take to go out.
const FLUSH_ON_LEAVE: Duration = Duration::from_secs(2);

/// A chat room: a handler for stream servers (TCP, Unix) whose connections
/// are the members of one room.
///
/// ```no_run
/// use socketserver::services::ChatRoom;
/// use socketserver::ThreadingTcpServer;
///
/// let room = ChatRoom::new().max_backlog(256 * 1024);
/// let server = ThreadingTcpServer::bind("127.0.0.1:9005", room)?;
/// server.shutdown_on_ctrl_c()?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ChatRoom {
    members: Mutex<HashMap<u64, Member>>,
    next_id: AtomicU64,
    max_backlog: usize,
    max_line: usize,
}

#[derive(Debug)]
struct Member {
    name: String,
    outbox: Arc<Outbox>,
}

impl Default for ChatRoom {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatRoom {
    /// An empty room with a 1 MiB backlog per member and an 8 KiB line limit.
    pub fn new() -> Self {
        ChatRoom {
            members: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max_backlog: DEFAULT_MAX_BACKLOG,
            max_line: DEFAULT_MAX_LINE,
        }
    }

    /// Sets how many bytes may wait for one member before it is disconnected
    /// (default 1 MiB).
    pub fn max_backlog(mut self, bytes: usize) -> Self {
        self.max_backlog = bytes.max(1);
        self
    }

    /// Sets the longest line in bytes, its terminator not counted (default
    /// 8 KiB).
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// The names of the members, sorted.
    pub fn members(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .members
            .lock()
            .values()
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Queues `text` for every member but `from`. Runs under the room's lock
    /// so that every member sees the room's events in the same order; it only
    /// copies bytes, it never touches a socket beyond shutting down a member
    /// whose queue overflows.
    fn broadcast(members: &HashMap<u64, Member>, from: u64, text: &str) {
        for (&id, member) in members {
            if id != from && !member.outbox.push(text.as_bytes()) {
                log::info!("chat: {} is not reading; disconnecting it", member.name);
            }
        }
    }

    fn join(&self, id: u64, name: String, outbox: Arc<Outbox>) {
        let mut members = self.members.lock();
        Self::broadcast(&members, id, &format!("* {name} joined\n"));
        members.insert(id, Member { name, outbox });
    }

    fn leave(&self, id: u64) {
        let mut members = self.members.lock();
        if let Some(member) = members.remove(&id) {
            Self::broadcast(&members, id, &format!("* {} left\n", member.name));
        }
    }

    fn say(&self, id: u64, text: &str) {
        let members = self.members.lock();
        if let Some(member) = members.get(&id) {
            Self::broadcast(&members, id, &format!("{}: {text}\n", member.name));
        }
    }

    fn rename(&self, id: u64, new: &str) {
        let mut members = self.members.lock();
        let reply = |members: &HashMap<u64, Member>, text: String| {
            if let Some(member) = members.get(&id) {
                member.outbox.push(text.as_bytes());
            }
        };
        if new.is_empty() {
            return reply(
                &members,
                "* a nick cannot be empty (use /nick NAME)\n".into(),
            );
        }
        if members
            .iter()
            .any(|(&other, m)| other != id && m.name == new)
        {
            return reply(&members, format!("* the nick {new} is taken\n"));
        }
        let Some(member) = members.get_mut(&id) else {
            return;
        };
        if member.name == new {
            return;
        }
        let old = std::mem::replace(&mut member.name, new.to_string());
        Self::broadcast(&members, id, &format!("* {old} is now {new}\n"));
    }

    /// Reads the member's lines until it leaves; true when it sent a line
    /// over the limit.
    fn converse(&self, req: &mut StreamRequest, id: u64) -> io::Result<bool> {
        let mut line = Vec::new();
        loop {
            match read_line(req, &mut line, self.max_line)? {
                Line::Eof => return Ok(false),
                Line::TooLong => return Ok(true),
                Line::Complete { .. } => {
                    let text = String::from_utf8_lossy(&line);
                    match nick_command(&text) {
                        Some(new) => self.rename(id, new),
                        None => self.say(id, &text),
                    }
                }
            }
        }
    }
}

/// The argument of a `/nick` command, trimmed; `None` for any other line.
fn nick_command(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("/nick")?;
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        Some(rest.trim())
    } else {
        None
    }
}

/// The name a member starts with.
fn initial_name(peer: &Address, id: u64) -> String {
    match peer {
        Address::Inet(addr) => addr.to_string(),
        Address::Unix(_) => format!("unix#{id}"),
    }
}

impl RequestHandler<StreamRequest> for ChatRoom {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let id = self.next_id.fetch_add(1, Relaxed);
        // (`peer_addr` may return the address or a reference to it.)
        #[allow(clippy::clone_on_copy, clippy::redundant_clone)]
        let peer: Address = req.peer_addr().clone();
        let name = initial_name(&peer, id);
        let outbox = Arc::new(Outbox::new(self.max_backlog, req.try_clone_writer()?));
        let writer = req.try_clone_writer()?;
        let server = req.server().clone();
        std::thread::scope(|scope| {
            let drainer = Arc::clone(&outbox);
            std::thread::Builder::new()
                .name("chat-writer".into())
                .spawn_scoped(scope, move || drainer.drain(writer, &server))?;
            // From here on, the member leaves and its writer stops however
            // this ends, a panic included (the scope waits for the writer).
            let membership = Membership {
                room: self,
                id,
                outbox: &outbox,
            };
            log::debug!("chat: {name} joined");
            self.join(id, name, Arc::clone(&outbox));
            let result = self.converse(req, id);
            // Out of the room first, so that the error is the last line sent.
            self.leave(id);
            let too_long = matches!(result, Ok(true));
            if too_long {
                outbox.push(format!("{LINE_TOO_LONG}\n").as_bytes());
            }
            let flushed = membership.end();
            if too_long && flushed {
                req.close_after_answer(1 << 20);
            }
            result.map(drop)
        })
    }
}

/// A member in the room: leaving it (on drop, or by [`Membership::end`])
/// announces the departure and stops the member's writer.
struct Membership<'a> {
    room: &'a ChatRoom,
    id: u64,
    outbox: &'a Outbox,
}

impl Membership<'_> {
    /// Leaves the room (if still in it); true when everything queued for the
    /// member went out.
    fn end(self) -> bool {
        self.room.leave(self.id);
        self.outbox.finish(FLUSH_ON_LEAVE)
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        // A no-op after `end`.
        self.room.leave(self.id);
        self.outbox.finish(FLUSH_ON_LEAVE);
    }
}

/// The outgoing queue of one member, drained by its writer thread.
#[derive(Debug)]
struct Outbox {
    state: Mutex<OutState>,
    changed: Condvar,
    max_backlog: usize,
    /// To shut the connection down from any thread: on overflow, or when the
    /// last messages cannot go out in time.
    connection: StreamWriter,
}

#[derive(Debug, Default)]
struct OutState {
    queue: Vec<u8>,
    /// Bytes the writer took and has not finished writing.
    writing: usize,
    /// No more bytes are accepted.
    closed: bool,
    /// The writer stops once the queue is empty.
    finishing: bool,
    /// Bytes were lost: the queue overflowed or a write failed.
    failed: bool,
    /// The writer thread has returned.
    done: bool,
}

impl Outbox {
    fn new(max_backlog: usize, connection: StreamWriter) -> Self {
        Outbox {
            state: Mutex::new(OutState::default()),
            changed: Condvar::new(),
            max_backlog,
            connection,
        }
    }

    /// Queues bytes; false when the member's backlog overflowed, in which
    /// case the queue is dropped and the connection shut down.
    fn push(&self, bytes: &[u8]) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return true;
        }
        if state.queue.len() + state.writing + bytes.len() > self.max_backlog {
            state.closed = true;
            state.failed = true;
            state.queue = Vec::new();
            drop(state);
            self.changed.notify_all();
            let _ = self.connection.shutdown();
            return false;
        }
        state.queue.extend_from_slice(bytes);
        drop(state);
        self.changed.notify_all();
        true
    }

    /// The writer thread: writes what is queued, batch by batch, until the
    /// outbox is closed (or finished and empty) or the connection fails.
    fn drain(&self, mut writer: StreamWriter, server: &ServerHandle) {
        let mut batch = Vec::new();
        let mut server_stopping = false;
        loop {
            {
                let mut state = self.state.lock();
                while state.queue.is_empty() && !state.closed && !state.finishing {
                    if server.is_shutdown() {
                        server_stopping = true;
                        break;
                    }
                    self.changed.wait_for(&mut state, SHUTDOWN_POLL);
                }
                if server_stopping || state.closed || state.queue.is_empty() {
                    break;
                }
                std::mem::swap(&mut batch, &mut state.queue);
                state.writing = batch.len();
            }
            let written = writer.write_all(&batch);
            batch.clear();
            if batch.capacity() > 64 * 1024 {
                batch = Vec::new();
            }
            let mut state = self.state.lock();
            state.writing = 0;
            if written.is_err() {
                state.failed = true;
                drop(state);
                let _ = self.connection.shutdown();
                break;
            }
            if server.is_shutdown() {
                server_stopping = true;
                break;
            }
        }
        if server_stopping {
            // A membership never ends by itself: end it, so that the server
            // stops at once instead of waiting for its shutdown deadline.
            // The member's reader sees the end of input and leaves the room.
            let _ = writer.write_all(SHUTTING_DOWN.as_bytes());
            let _ = self.connection.shutdown();
        }
        let mut state = self.state.lock();
        state.closed = true;
        state.queue = Vec::new();
        state.done = true;
        drop(state);
        self.changed.notify_all();
    }

    /// Lets the writer send what is queued, for at most `limit`, then stops
    /// it (shutting the connection down if it is stuck). True when everything
    /// queued went out.
    fn finish(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock();
        state.finishing = true;
        self.changed.notify_all();
        while !state.done {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        if state.done {
            return !state.failed;
        }
        drop(state);
        // Stuck writing to a client that does not read: cut it.
        let _ = self.connection.shutdown();
        let mut state = self.state.lock();
        while !state.done {
            self.changed.wait(&mut state);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_commands() {
        assert_eq!(nick_command("/nick alice"), Some("alice"));
        assert_eq!(nick_command("/nick   bob  "), Some("bob"));
        assert_eq!(nick_command("/nick"), Some(""));
        assert_eq!(nick_command("/nick   "), Some(""));
        assert_eq!(nick_command("/nickname x"), None);
        assert_eq!(nick_command("hello /nick x"), None);
    }

    #[test]
    fn initial_names() {
        let v4: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let v6: std::net::SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(initial_name(&Address::Inet(v4), 1), "127.0.0.1:5000");
        assert_eq!(initial_name(&Address::Inet(v6), 1), "[::1]:5000");
        assert_eq!(initial_name(&Address::Unix(None), 7), "unix#7");
    }
}
