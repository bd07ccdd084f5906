//! chat: a chat room over lines.
//!
//! # Protocol
//!
//! Every client is a member of one room. A member sends UTF-8 lines ending in
//! `\n` (`\r\n` accepted); each line goes to every other member as
//! `NAME: LINE`. A member's NAME starts as its address, `HOST:PORT`
//! (`[HOST]:PORT` for IPv6; `unix#N` on a Unix socket). The room tells the
//! others when someone arrives, leaves, or changes name; a member gets no
//! notice of its own arrival:
//!
//! ```text
//! * 127.0.0.1:50312 joined
//! 127.0.0.1:50312: hi all
//! * 127.0.0.1:50312 is now alice
//! alice: hello again
//! * alice left
//! ```
//!
//! `/nick NEW` changes the sender's name. An empty name, one with `:` or
//! white space, or one that another member uses, is refused, and only the
//! sender is told (`* ...`). A line over the limit (8 KiB by default) is
//! answered `error: line too long` and the member is disconnected.
//!
//! # What is relayed
//!
//! Bytes that are not UTF-8 become U+FFFD, and so does every control
//! character (U+0000 to U+001F but TAB, and U+007F to U+009F) of a line or a
//! name, before anything is relayed: no member can send terminal escapes
//! (colours, window titles, erased lines, a fake `* server` notice after a
//! carriage return) to another.
//!
//! # A slow member never stalls the room, a fast one never floods it
//!
//! Sending a line to the room queues it for each member without waiting
//! ([`ConnHandle::send`]). A member's queue is bounded
//! ([`ChatRoom::max_backlog`], 1 MiB by default): a member that stops reading
//! while the room keeps talking is disconnected, and the others see
//! `* NAME left`. A member
//! that sends faster than [`ChatRoom::max_rate`] (1 MiB/s by default, with a
//! burst of as much) is slowed down: the room stops reading from it until
//! its allowance refills, so its own connection backs up and the readers who
//! keep reading stay. A member that only listens is not cut for being quiet
//! (unless the server has an idle timeout).
//!
//! When the server shuts down, every member is told
//! `* the server is shutting down` and its connection is closed, so the
//! server stops at once rather than at its shutdown deadline.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::request::{Closing, Conn, ConnHandle, Framing, FramingError, MessageHandler, Next};
use crate::transport::Address;

/// The default bound of a member's outgoing queue, in bytes.
pub const DEFAULT_MAX_BACKLOG: usize = 1 << 20;

/// The default longest line, in bytes.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

/// The default most bytes a member may send per second (its burst too).
pub const DEFAULT_MAX_RATE: usize = 1 << 20;

/// The answer to a line over the limit, before the member is disconnected.
pub const LINE_TOO_LONG: &str = "error: line too long";

/// What members are told when the server shuts down, before it closes their
/// connections.
pub const SHUTTING_DOWN: &str = "* the server is shutting down\n";

/// A chat room: a message handler for stream servers (TCP, Unix) whose
/// connections are the members of one room. Cloning it gives another handle
/// to the same room (to serve it on two listeners, say).
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
#[derive(Debug, Clone)]
pub struct ChatRoom {
    members: Arc<Mutex<HashMap<u64, Member>>>,
    next_id: Arc<AtomicU64>,
    max_backlog: usize,
    max_line: usize,
    max_rate: usize,
}

#[derive(Debug)]
struct Member {
    name: String,
    handle: ConnHandle,
}

/// One member's connection: who it is, and its sending allowance.
#[derive(Debug)]
pub struct Membership {
    id: u64,
    /// Bytes the member may still send now.
    allowance: f64,
    refilled: Instant,
}

impl Default for ChatRoom {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatRoom {
    /// An empty room with a 1 MiB backlog per member, an 8 KiB line limit
    /// and 1 MiB/s per sender.
    pub fn new() -> Self {
        ChatRoom {
            members: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            max_backlog: DEFAULT_MAX_BACKLOG,
            max_line: DEFAULT_MAX_LINE,
            max_rate: DEFAULT_MAX_RATE,
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

    /// Sets how many bytes per second a member may send, and its burst
    /// (default 1 MiB); past it, the member is slowed down.
    pub fn max_rate(mut self, bytes_per_second: usize) -> Self {
        self.max_rate = bytes_per_second.max(1);
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
    /// so that every member sees the room's events in the same order; it
    /// never waits for a member.
    fn broadcast(members: &HashMap<u64, Member>, from: u64, text: &str) {
        for (&id, member) in members {
            if id != from && !member.handle.is_closed() {
                member.handle.send(text.as_bytes());
            }
        }
    }

    fn join(&self, id: u64, name: String, handle: ConnHandle) {
        let mut members = self.members.lock();
        Self::broadcast(&members, id, &format!("* {name} joined\n"));
        members.insert(id, Member { name, handle });
    }

    fn leave(&self, id: u64) {
        let mut members = self.members.lock();
        if let Some(member) = members.remove(&id) {
            log::debug!("chat: {} left", member.name);
            Self::broadcast(&members, id, &format!("* {} left\n", member.name));
        }
    }

    fn say(&self, id: u64, text: &str) {
        let members = self.members.lock();
        if let Some(member) = members.get(&id) {
            Self::broadcast(&members, id, &format!("{}: {text}\n", member.name));
        }
    }

    /// A `/nick`: the reply to the sender when refused.
    fn rename(&self, id: u64, new: &str) -> Option<String> {
        if new.is_empty() {
            return Some("* a nick cannot be empty (use /nick NAME)\n".into());
        }
        if new.contains(|c: char| c == ':' || c.is_whitespace()) {
            return Some(format!(
                "* a nick cannot contain ':' or spaces: {new:?} refused\n"
            ));
        }
        let mut members = self.members.lock();
        if members
            .iter()
            .any(|(&other, m)| other != id && m.name == new)
        {
            return Some(format!("* the nick {new} is taken\n"));
        }
        let member = members.get_mut(&id)?;
        if member.name != new {
            let old = std::mem::replace(&mut member.name, new.to_string());
            Self::broadcast(&members, id, &format!("* {old} is now {new}\n"));
        }
        None
    }

    /// Takes `bytes` from the member's allowance; how long to stop reading
    /// from it when it sends faster than the rate.
    fn throttle(&self, membership: &mut Membership, bytes: usize) -> Option<Duration> {
        let rate = self.max_rate as f64;
        let now = Instant::now();
        let refill = now.duration_since(membership.refilled).as_secs_f64() * rate;
        membership.allowance = (membership.allowance + refill).min(rate) - bytes as f64;
        membership.refilled = now;
        (membership.allowance < 0.0).then(|| Duration::from_secs_f64(-membership.allowance / rate))
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

/// `bytes` as text that cannot move a terminal: invalid UTF-8 and every
/// control character but TAB become U+FFFD.
pub fn sanitize(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c != '\t' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c)) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// The name a member starts with.
fn initial_name(peer: &Address, id: u64) -> String {
    match peer {
        Address::Inet(addr) => addr.to_string(),
        Address::Unix(_) => format!("unix#{id}"),
    }
}

impl MessageHandler for ChatRoom {
    type Session = Membership;

    fn framing(&self, _: &Membership) -> Framing {
        Framing::Line { max: self.max_line }
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        true
    }

    fn open(&self, conn: &mut Conn<'_>) -> io::Result<Membership> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let name = initial_name(conn.peer(), id);
        let handle = conn.handle(self.max_backlog)?;
        log::debug!("chat: {name} joined");
        self.join(id, name, handle);
        Ok(Membership {
            id,
            allowance: self.max_rate as f64,
            refilled: Instant::now(),
        })
    }

    fn on_message(
        &self,
        membership: &mut Membership,
        line: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        let text = sanitize(line);
        match nick_command(&text) {
            Some(new) => {
                if let Some(refusal) = self.rename(membership.id, new) {
                    conn.write_all(refusal.as_bytes())?;
                }
            }
            None => self.say(membership.id, &text),
        }
        if let Some(pause) = self.throttle(membership, line.len() + 1) {
            conn.pause_reading(pause);
        }
        Ok(Next::Continue)
    }

    fn on_bad_message(
        &self,
        membership: &mut Membership,
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        if let FramingError::LineTooLong { max } = error {
            log::info!(
                "chat: {} sent a line over {max} bytes; disconnecting it",
                conn.peer()
            );
            // Out of the room first, so that the error is the last line sent.
            self.leave(membership.id);
            writeln!(conn, "{LINE_TOO_LONG}")?;
        }
        Ok(())
    }

    fn close(&self, membership: Membership, why: Closing, conn: &mut Conn<'_>) {
        self.leave(membership.id);
        if why == Closing::Shutdown {
            let _ = conn.write_all(SHUTTING_DOWN.as_bytes());
        }
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

    #[test]
    fn control_characters_never_reach_another_member() {
        let hostile = "\x1b]0;owned\x07\x1b[2K\r* server says\u{9b}hi\tthere\u{7f}\0";
        let clean = sanitize(hostile.as_bytes());
        assert!(
            !clean.chars().any(|c| c != '\t' && c.is_control()),
            "{clean:?}"
        );
        assert!(clean.contains("\tthere"), "TAB is kept");
        assert_eq!(clean.matches('\u{fffd}').count(), 7, "{clean:?}");
        assert_eq!(sanitize(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
    }

    #[test]
    fn a_sender_over_its_rate_is_paused_for_as_long_as_it_overdrew() {
        let room = ChatRoom::new().max_rate(1000);
        let mut member = Membership {
            id: 1,
            allowance: 1000.0,
            refilled: Instant::now(),
        };
        assert_eq!(room.throttle(&mut member, 600), None);
        let pause = room
            .throttle(&mut member, 900)
            .expect("overdrawn by about 500");
        assert!(
            pause > Duration::from_millis(400) && pause <= Duration::from_millis(500),
            "{pause:?}"
        );
    }
}
