//! UDP load: ping-pong over many connected sockets per thread, one datagram
//! in flight on each.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::payload::Payload;
use super::{poll_ready, Config, ErrorKind, Phases, Tally, Window, MAX_DATAGRAM};

/// The longest a thread waits in `epoll` before it checks its timers.
const TICK: Duration = Duration::from_millis(20);
/// How long a socket waits before sending again after the server refused.
const BACKOFF: Duration = Duration::from_millis(50);

/// One client socket and the datagram in flight on it.
struct Sock {
    socket: UdpSocket,
    seq: usize,
    /// A request is out and unanswered.
    waiting: bool,
    /// A request must be (re)sent at `deadline`.
    unsent: bool,
    /// A request that timed out: its late answer is ignored, not an error.
    late: Option<usize>,
    started: Instant,
    deadline: Instant,
}

/// Runs one thread's share of a UDP ping-pong run.
pub(super) fn ping_pong(
    config: &Config,
    share: usize,
    payload: &Payload,
    phases: &Phases,
) -> Tally {
    let mut tally = Tally::new();
    let poll = Poll::new();
    let mut socks: Vec<Option<Sock>> = match &poll {
        Ok(poll) => (0..share)
            .map(|i| match open(config.target, poll, Token(i), i) {
                Ok(sock) => Some(sock),
                Err(_) => {
                    tally.error(ErrorKind::Io);
                    None
                }
            })
            .collect(),
        Err(_) => {
            for _ in 0..share {
                tally.error(ErrorKind::Io);
            }
            Vec::new()
        }
    };
    tally.connected = socks.iter().flatten().count();
    let window = phases.connected();
    if let Ok(mut poll) = poll {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; MAX_DATAGRAM + 1];
        let now = Instant::now();
        for sock in socks.iter_mut().flatten() {
            send(sock, config, payload, &mut tally, now);
        }
        loop {
            let now = Instant::now();
            if now >= window.end {
                break;
            }
            poll_ready(
                &mut poll,
                &mut events,
                (window.end - now).min(TICK),
                &mut tally,
            );
            for event in events.iter() {
                if let Some(Some(sock)) = socks.get_mut(event.token().0) {
                    receive(sock, config, payload, &window, &mut tally, &mut scratch);
                    if sock.unsent && sock.deadline <= Instant::now() {
                        send(sock, config, payload, &mut tally, Instant::now());
                    }
                }
            }
            let now = Instant::now();
            for sock in socks.iter_mut().flatten() {
                if sock.deadline > now {
                    continue;
                }
                if sock.waiting {
                    tally.lost += 1;
                    sock.late = Some(sock.seq);
                    sock.seq = sock.seq.wrapping_add(1);
                    send(sock, config, payload, &mut tally, now);
                } else if sock.unsent {
                    send(sock, config, payload, &mut tally, now);
                }
            }
        }
    }
    phases.finished();
    phases.released();
    tally
}

/// A socket bound to an ephemeral port and connected to `target`, so that it
/// hears only the server.
fn open(target: SocketAddr, poll: &Poll, token: Token, seq: usize) -> io::Result<Sock> {
    let local: SocketAddr = if target.is_ipv6() {
        "[::]:0".parse().expect("an address")
    } else {
        "0.0.0.0:0".parse().expect("an address")
    };
    let mut socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    poll.registry()
        .register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
    let now = Instant::now();
    Ok(Sock {
        socket,
        seq,
        waiting: false,
        unsent: true,
        late: None,
        started: now,
        deadline: now,
    })
}

/// Sends request `sock.seq`; when the socket cannot send now, tries again on
/// the next event or tick.
fn send(sock: &mut Sock, config: &Config, payload: &Payload, tally: &mut Tally, now: Instant) {
    match sock.socket.send(payload.request(sock.seq)) {
        Ok(n) if n == payload.size() => {
            sock.waiting = true;
            sock.unsent = false;
            sock.started = now;
            sock.deadline = now + config.timeout;
        }
        Ok(_) => {
            tally.error(ErrorKind::Io);
            retry_later(sock, now);
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            sock.waiting = false;
            sock.unsent = true;
            sock.deadline = now;
        }
        Err(e) => {
            tally.error(ErrorKind::of(&e));
            retry_later(sock, now);
        }
    }
}

fn retry_later(sock: &mut Sock, now: Instant) {
    sock.waiting = false;
    sock.unsent = true;
    sock.deadline = now + BACKOFF;
}

/// Reads every datagram waiting on `sock`, checks it, and sends the next
/// request after a right answer.
fn receive(
    sock: &mut Sock,
    config: &Config,
    payload: &Payload,
    window: &Window,
    tally: &mut Tally,
    scratch: &mut [u8],
) {
    loop {
        match sock.socket.recv(scratch) {
            Ok(n) => {
                let now = Instant::now();
                let answer = &scratch[..n];
                if sock.waiting && answer == payload.expected(sock.seq) {
                    tally.answered(window, sock.started, now);
                } else if sock
                    .late
                    .is_some_and(|late| answer == payload.expected(late))
                {
                    sock.late = None;
                    continue;
                } else {
                    tally.error(ErrorKind::Mismatch);
                    if !sock.waiting {
                        continue;
                    }
                }
                sock.late = None;
                sock.seq = sock.seq.wrapping_add(1);
                send(sock, config, payload, tally, now);
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return,
                io::ErrorKind::Interrupted => {}
                _ => {
                    // The server's port is closed (ICMP unreachable), or
                    // worse: the request in flight is lost; send again later.
                    tally.error(ErrorKind::of(&e));
                    retry_later(sock, Instant::now());
                    return;
                }
            },
        }
    }
}
