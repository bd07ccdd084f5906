//! Chat load: every member joins the room, then one line fans out to all,
//! every member on one edge-triggered `epoll` (`mio`).
//!
//! The room tells every member of each later arrival (`* NAME joined`), so
//! with N members it sends N(N-1)/2 join lines in all; once they have all
//! arrived, every member is in the room and has read everything sent before
//! the line, and the fan-out is measured from a quiet room. Then one member
//! sends the line; every other member must receive exactly `NAME: LINE`, with
//! NAME the sender's address as the server sees it (`HOST:PORT`).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::payload::Payload;
use super::{
    connect, could_not_start, poll_ready, Config, ErrorKind, Phases, Tally, CONNECT_BURST,
    MAX_CHAT_LINE,
};

/// The longest a thread waits in `epoll` before it checks its timers.
const TICK: Duration = Duration::from_millis(20);
/// Scratch space for reading (lines are checked, not kept).
const SCRATCH: usize = 64 * 1024;
/// The longest line accepted from the room: a line of the longest kind this
/// bench sends, with a name before it.
const MAX_RECEIVED_LINE: usize = MAX_CHAT_LINE + 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not connected yet.
    New,
    /// A connect is in progress.
    Connecting,
    /// Connected: in the room (or about to be), reading join lines.
    Joined,
    /// The line has been sent; this member waits for its copy.
    Waiting,
    /// This member received its copy.
    Got,
    /// Out of the run after an error (already counted).
    Failed,
}

/// One member of the room.
struct Member {
    stream: Option<TcpStream>,
    stage: Stage,
    /// What it has received, cut into lines.
    lines: Lines,
    /// Bytes to send (the sender's line) and how many went out.
    outgoing: Vec<u8>,
    sent: usize,
    /// When the connect times out.
    deadline: Instant,
    /// Join lines this member received before the line was sent.
    joins: u64,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Members connect and the room announces their joins.
    Joining,
    /// The line is out, sent at the instant held.
    FanningOut(Instant),
}

/// Every member and what they have counted.
struct Room<'a> {
    config: &'a Config,
    poll: Poll,
    members: Vec<Member>,
    scratch: Box<[u8]>,
    /// The next member to connect.
    next_new: usize,
    phase: Phase,
    /// Join lines received, by every member together.
    joins: u64,
    /// The line every member but the sender must receive.
    expected: Vec<u8>,
    tally: Tally,
}

/// Runs a chat fan-out with `share` members (the whole run: chat is driven
/// from one thread).
pub(super) fn fan_out(config: &Config, share: usize, phases: &Phases) -> Tally {
    let mut room = match Room::new(config, share) {
        Ok(room) => room,
        Err(_) => return could_not_start(share, phases),
    };
    let mut events = Events::with_capacity(1024);
    room.join_all(&mut events);
    phases.connected();
    room.say_and_wait(&mut events);
    phases.finished();
    phases.released();
    room.tally
}

/// A byte stream cut into lines (`\n`, not kept), however the bytes arrive.
#[derive(Debug, Default)]
struct Lines {
    /// The bytes of a line not complete yet, at most [`MAX_RECEIVED_LINE`].
    partial: Vec<u8>,
}

/// What [`Lines::feed`] did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fed {
    /// Every complete line went to the callback; the rest waits for more.
    Taken,
    /// The callback asked to stop: the rest of the bytes were dropped.
    Stopped,
    /// A line grew past [`MAX_RECEIVED_LINE`] without ending: dropped.
    TooLong,
}

impl Lines {
    /// Gives `line` every line that `bytes` completes, in order, until it
    /// returns false.
    fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8]) -> bool) -> Fed {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            let keep_going = if self.partial.is_empty() {
                line(&bytes[..newline])
            } else {
                self.partial.extend_from_slice(&bytes[..newline]);
                let complete = std::mem::take(&mut self.partial);
                let keep_going = line(&complete);
                // The allocation is kept for the next line.
                self.partial = complete;
                self.partial.clear();
                keep_going
            };
            bytes = &bytes[newline + 1..];
            if !keep_going {
                self.partial.clear();
                return Fed::Stopped;
            }
        }
        if self.partial.len() + bytes.len() > MAX_RECEIVED_LINE {
            self.partial.clear();
            return Fed::TooLong;
        }
        self.partial.extend_from_slice(bytes);
        Fed::Taken
    }
}

/// `* NAME joined`: a later member's arrival.
fn is_join(line: &[u8]) -> bool {
    line.starts_with(b"* ") && line.ends_with(b" joined")
}

/// How many join lines `members` members receive in all: the k-th to arrive
/// hears of the members - k after it.
fn joins_expected(members: usize) -> u64 {
    let n = members as u64;
    n * n.saturating_sub(1) / 2
}

impl<'a> Room<'a> {
    fn new(config: &'a Config, share: usize) -> io::Result<Self> {
        let now = Instant::now();
        let members = (0..share)
            .map(|_| Member {
                stream: None,
                stage: Stage::New,
                lines: Lines::default(),
                outgoing: Vec::new(),
                sent: 0,
                deadline: now,
                joins: 0,
            })
            .collect();
        Ok(Room {
            config,
            poll: Poll::new()?,
            members,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            next_new: 0,
            phase: Phase::Joining,
            joins: 0,
            expected: Vec::new(),
            tally: Tally::new(),
        })
    }

    /// Connects every member, at most [`CONNECT_BURST`] connects at a time,
    /// and reads until the room has announced every join to every member.
    /// Gives up when nothing has moved (no connect, no join line) for the
    /// timeout; members not connected then are connect errors, and a room
    /// that did not announce every join is one timeout.
    fn join_all(&mut self, events: &mut Events) {
        let expected = joins_expected(self.members.len());
        let mut progress = (0, 0);
        let mut last_progress = Instant::now();
        loop {
            self.top_up();
            if self.joins >= expected && self.count(Stage::Joined) == self.members.len() {
                break;
            }
            let now = Instant::now();
            let moved = (self.joins, self.count(Stage::Joined));
            if moved != progress {
                progress = moved;
                last_progress = now;
            } else if now.duration_since(last_progress) >= self.config.timeout {
                break;
            }
            self.wait(events, TICK);
            self.check_connects();
        }
        for i in 0..self.members.len() {
            if matches!(self.members[i].stage, Stage::New | Stage::Connecting) {
                self.fail(i, ErrorKind::Connect);
            }
        }
        let joined = self.count(Stage::Joined);
        if joined == self.members.len() && self.joins < expected {
            self.tally.error(ErrorKind::Timeout);
        }
        self.tally.connected = self.in_the_room();
    }

    /// How many members are in the room: the first to arrive hears of every
    /// later one, so the most join lines a member received, plus that
    /// member. (A connected member may still wait in the server's accept
    /// queue, outside the room.)
    fn in_the_room(&self) -> usize {
        let connected = self
            .members
            .iter()
            .filter(|m| m.stage == Stage::Joined)
            .map(|m| m.joins);
        match connected.max() {
            Some(most) => usize::try_from(most)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
                .min(self.members.len()),
            None => 0,
        }
    }

    fn count(&self, stage: Stage) -> usize {
        self.members.iter().filter(|m| m.stage == stage).count()
    }

    /// Starts connects while fewer than [`CONNECT_BURST`] are in progress.
    fn top_up(&mut self) {
        let mut connecting = self.count(Stage::Connecting);
        while self.next_new < self.members.len() && connecting < CONNECT_BURST {
            let i = self.next_new;
            self.next_new += 1;
            self.open(i);
            connecting += 1;
        }
    }

    fn open(&mut self, i: usize) {
        let opened = connect(self.config.target, self.config.source(i)).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                let member = &mut self.members[i];
                member.stream = Some(stream);
                member.stage = Stage::Connecting;
                member.deadline = Instant::now() + self.config.timeout;
            }
            Err(_) => self.fail(i, ErrorKind::Connect),
        }
    }

    fn check_connects(&mut self) {
        let now = Instant::now();
        for i in 0..self.members.len() {
            if self.members[i].stage == Stage::Connecting && self.members[i].deadline <= now {
                self.fail(i, ErrorKind::Connect);
            }
        }
    }

    /// Counts an error for member `i` and takes it out of the run; its
    /// connection stays open until the end (closing it would announce a
    /// departure to everyone else), unless it failed to connect.
    fn fail(&mut self, i: usize, kind: ErrorKind) {
        self.tally.error(kind);
        let member = &mut self.members[i];
        if matches!(member.stage, Stage::New | Stage::Connecting) {
            member.stream = None;
        }
        member.stage = Stage::Failed;
    }

    /// The first member in the room sends the line; waits until every other
    /// member has its copy, at most the timeout.
    fn say_and_wait(&mut self, events: &mut Events) {
        let Some(sender) = self.members.iter().position(|m| m.stage == Stage::Joined) else {
            return;
        };
        let name = match self.members[sender]
            .stream
            .as_ref()
            .map(TcpStream::local_addr)
        {
            Some(Ok(address)) => address.to_string(),
            _ => {
                self.fail(sender, ErrorKind::Io);
                return;
            }
        };
        let line = Payload::new(self.config.size).request(0).to_vec();
        self.expected = [name.as_bytes(), b": ", &line].concat();
        for (i, member) in self.members.iter_mut().enumerate() {
            if i != sender && member.stage == Stage::Joined {
                member.stage = Stage::Waiting;
            }
        }
        let sender_member = &mut self.members[sender];
        sender_member.outgoing = [&line[..], b"\n"].concat();
        sender_member.sent = 0;
        let sent_at = Instant::now();
        self.phase = Phase::FanningOut(sent_at);
        self.drive(sender);
        let deadline = sent_at + self.config.timeout;
        loop {
            if self.count(Stage::Waiting) == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.wait(events, (deadline - now).min(TICK));
        }
        for i in 0..self.members.len() {
            if self.members[i].stage == Stage::Waiting {
                self.fail(i, ErrorKind::Timeout);
            }
        }
        // Whatever else has arrived by now (a second copy, say) is checked too.
        self.wait(events, Duration::ZERO);
    }

    /// Waits for readiness at most `timeout` and drives what is ready.
    fn wait(&mut self, events: &mut Events, timeout: Duration) {
        if !poll_ready(&mut self.poll, events, timeout, &mut self.tally) {
            return;
        }
        for event in events.iter() {
            self.drive(event.token().0);
        }
    }

    /// Completes a connect, sends what member `i` has to send, and reads
    /// and checks its lines, until its socket would block.
    fn drive(&mut self, i: usize) {
        if self.members[i].stage == Stage::Connecting {
            let Some(stream) = self.members[i].stream.as_ref() else {
                return;
            };
            if !matches!(stream.take_error(), Ok(None)) {
                return self.fail(i, ErrorKind::Connect);
            }
            match stream.peer_addr() {
                Ok(_) => self.members[i].stage = Stage::Joined,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.fail(i, ErrorKind::Connect),
            }
        }
        if self.members[i].stage == Stage::New {
            return;
        }
        if let Err(kind) = self.send(i) {
            return self.fail(i, kind);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        self.read(i, &mut scratch);
        self.scratch = scratch;
    }

    /// Writes member `i`'s outgoing bytes as far as the socket takes them.
    fn send(&mut self, i: usize) -> Result<(), ErrorKind> {
        let member = &mut self.members[i];
        let Some(stream) = member.stream.as_mut() else {
            return Ok(());
        };
        while member.sent < member.outgoing.len() {
            match stream.write(&member.outgoing[member.sent..]) {
                Ok(0) => return Err(ErrorKind::Closed),
                Ok(n) => member.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ErrorKind::of(&e)),
            }
        }
        Ok(())
    }

    /// Reads member `i` until its socket would block, checking each line. A
    /// member out of the run is still read, and what it gets ignored: left
    /// unread, it would fill its queue on the server, be disconnected, and
    /// its departure would reach every other member.
    fn read(&mut self, i: usize, scratch: &mut [u8]) {
        loop {
            let failed = self.members[i].stage == Stage::Failed;
            let Some(stream) = self.members[i].stream.as_mut() else {
                return;
            };
            match stream.read(scratch) {
                Ok(0) if failed => return,
                Ok(0) => return self.fail(i, ErrorKind::Closed),
                Ok(_) if failed => {}
                Ok(n) => {
                    let mut lines = std::mem::take(&mut self.members[i].lines);
                    let fed = lines.feed(&scratch[..n], |line| self.line(i, line));
                    self.members[i].lines = lines;
                    if fed == Fed::TooLong {
                        self.fail(i, ErrorKind::Mismatch);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if failed => return,
                Err(e) => return self.fail(i, ErrorKind::of(&e)),
            }
        }
    }

    /// Checks one line member `i` received; false when it failed the member.
    fn line(&mut self, i: usize, line: &[u8]) -> bool {
        if is_join(line) {
            if self.phase == Phase::Joining {
                self.joins += 1;
                self.members[i].joins += 1;
            }
            // Other members' arrivals are not the line: skipped whenever
            // they come (the room sends every join before the line anyway).
            return true;
        }
        match (self.phase, self.members[i].stage) {
            (Phase::FanningOut(sent_at), Stage::Waiting) if line == self.expected => {
                let latency = sent_at.elapsed();
                self.members[i].stage = Stage::Got;
                self.tally.delivered += 1;
                self.tally.requests += 1;
                let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.tally.latency.saturating_record(ns.max(1));
                self.tally.slowest = self.tally.slowest.max(Some(latency));
                true
            }
            _ => {
                // A departure, a second copy, the sender's own line, or
                // anything else: not what the room should have sent.
                self.fail(i, ErrorKind::Mismatch);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every line `feed` gives out when `chunks` arrive one after the other.
    fn lines_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Fed>) {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        let fed = chunks
            .iter()
            .map(|chunk| {
                lines.feed(chunk, |line| {
                    got.push(line.to_vec());
                    true
                })
            })
            .collect();
        (got, fed)
    }

    #[test]
    fn lines_are_cut_however_the_bytes_arrive() {
        let (got, fed) = lines_of(&[b"* a jo", b"ined\nb: hi\n\nc", b"", b"d\n"]);
        assert_eq!(got, [&b"* a joined"[..], b"b: hi", b"", b"cd"]);
        assert_eq!(fed, [Fed::Taken; 4]);
    }

    #[test]
    fn a_line_without_end_is_cut_off() {
        let long = vec![b'x'; MAX_RECEIVED_LINE];
        let (got, fed) = lines_of(&[&long, b"x", b"after\n"]);
        assert_eq!(fed, [Fed::Taken, Fed::TooLong, Fed::Taken]);
        assert_eq!(got, [&b"after"[..]]);
        // Exactly the limit, then its end: one line.
        let (got, _) = lines_of(&[&long, b"\n"]);
        assert_eq!(got, [long]);
    }

    #[test]
    fn the_callback_can_stop_the_lines() {
        let mut lines = Lines::default();
        let mut seen = 0;
        let fed = lines.feed(b"one\ntwo\nthree\nfour", |_| {
            seen += 1;
            seen < 2
        });
        assert_eq!((fed, seen), (Fed::Stopped, 2));
        assert!(lines.partial.is_empty());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_lines(
            text in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40),
                0..20,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut stream = Vec::new();
            for line in &text {
                stream.extend_from_slice(line);
                stream.push(b'\n');
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                chunks.push(&stream[at..cut]);
                at = cut;
            }
            let (got, fed) = lines_of(&chunks);
            prop_assert_eq!(got, text);
            prop_assert!(fed.iter().all(|f| *f == Fed::Taken));
        }

        #[test]
        fn the_partial_line_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..60),
        ) {
            let mut lines = Lines::default();
            for chunk in &chunks {
                lines.feed(chunk, |line| line.len() <= MAX_RECEIVED_LINE + 3000);
                prop_assert!(lines.partial.len() <= MAX_RECEIVED_LINE);
            }
        }
    }

    #[test]
    fn join_lines() {
        assert!(is_join(b"* 127.0.0.1:5000 joined"));
        assert!(is_join(b"* alice joined"));
        assert!(!is_join(b"* alice left"));
        assert!(!is_join(b"alice: I joined"));
        assert!(!is_join(b"127.0.0.1:5000: * x joined!"));
    }

    #[test]
    fn the_room_is_counted_from_the_first_arrival() {
        let config = Config {
            service: super::super::Service::Chat,
            mode: super::super::Mode::FanOut,
            ..Config::new("127.0.0.1:9".parse().unwrap(), super::super::Transport::Tcp)
        };
        let mut room = Room::new(&config, 4).unwrap();
        assert_eq!(room.in_the_room(), 0);
        // Three connected; the earliest of them heard of one later arrival:
        // two are in the room, the third still waits to be accepted.
        for (member, joins) in room.members.iter_mut().zip([0, 1, 0]) {
            member.stage = Stage::Joined;
            member.joins = joins;
        }
        assert_eq!(room.in_the_room(), 2);
        room.members[2].joins = 9;
        assert_eq!(room.in_the_room(), 4, "never more than the members");
        room.members[2].stage = Stage::Failed;
        assert_eq!(room.in_the_room(), 2, "a failed member does not count");
    }

    #[test]
    fn every_member_hears_of_every_later_one() {
        assert_eq!(joins_expected(1), 0);
        assert_eq!(joins_expected(2), 1);
        assert_eq!(joins_expected(20), 190);
        assert_eq!(joins_expected(10_000), 49_995_000);
    }
}
