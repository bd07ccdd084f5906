//! systemd: readiness notifications, the watchdog, and socket activation.
//!
//! **Notifications** ([`Notifier`]): when `NOTIFY_SOCKET` names a Unix
//! datagram socket (a path, or `@name` in the abstract namespace), the
//! notifier sends `READY=1`, `STOPPING=1` and `STATUS=...` on request, and,
//! when `WATCHDOG_USEC` is set for this process, `WATCHDOG=1` from its own
//! thread every half of that period. Without `NOTIFY_SOCKET` it sends nothing.
//! A socket that cannot be reached is logged once, at warn, and serving goes
//! on: no call blocks or fails.
//!
//! **Socket activation** ([`inherited_sockets`]): when `LISTEN_PID` is this
//! process and `LISTEN_FDS` is N > 0, descriptors 3 to 3 + N - 1 are taken as
//! sockets, their kind read from the socket itself (TCP, UDP, Unix stream or
//! Unix datagram); a stream socket that is not yet listening is made to
//! listen. Each is marked close-on-exec.
//!
//! Both read their variables once and remove them from the environment, so
//! that the programs this process runs inherit none of them. Removing a
//! variable races with any other thread reading the environment (the C
//! library's `getenv`, used by DNS resolution among others), so call
//! [`Notifier::from_env`] and [`inherited_sockets`] at the start of `main`,
//! before starting threads.
//!
//! The logic is testable without touching the environment:
//! [`NotifyConfig::from_values`] and [`activation_fds`] take the variables'
//! values and the process id.
//!
//! ```
//! use std::os::unix::net::UnixDatagram;
//! use std::time::Duration;
//! use socketserver::ops::systemd::{activation_fds, NotifyConfig, Notifier};
//!
//! // What systemd would set, given explicitly: NOTIFY_SOCKET and a watchdog
//! // of 30 s for process 1234.
//! let watched = NotifyConfig::from_values(Some("/run/n".as_ref()), Some("30000000"), None, 1234);
//! assert_eq!(watched.watchdog_period, Some(Duration::from_secs(30)));
//!
//! let dir = std::env::temp_dir().join(format!("sd-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("notify");
//! let manager = UnixDatagram::bind(&path).unwrap();
//! let notifier = Notifier::new(NotifyConfig::from_values(Some(path.as_os_str()), None, None, 1234));
//! notifier.ready();
//! let mut message = [0u8; 64];
//! let n = manager.recv(&mut message).unwrap();
//! assert_eq!(&message[..n], b"READY=1\n");
//! # std::fs::remove_dir_all(&dir).unwrap();
//!
//! // Socket activation for process 1234: descriptors 3 and 4.
//! assert_eq!(activation_fds(Some("1234"), Some("2"), 1234).unwrap(), 3..5);
//! // Meant for another process, or LISTEN_FDS=0: no activation.
//! assert_eq!(activation_fds(Some("99"), Some("2"), 1234).unwrap(), 3..3);
//! assert_eq!(activation_fds(Some("1234"), Some("0"), 1234).unwrap(), 3..3);
//! ```

use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{TcpListener, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram, UnixListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// The first descriptor passed by socket activation (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The listen backlog given to an inherited stream socket that was not yet
/// listening (the same as [`Options::backlog`](crate::Options::backlog)'s
/// default).
pub const INHERITED_BACKLOG: i32 = 1024;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const WATCHDOG_PID: &str = "WATCHDOG_PID";
const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

// ---------------------------------------------------------------------------
// Notifications

/// One notification, as `sd_notify(3)` writes it: a `NAME=VALUE` assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message<'a> {
    /// `READY=1`: startup is done.
    Ready,
    /// `STOPPING=1`: a shutdown has begun.
    Stopping,
    /// `WATCHDOG=1`: the service is alive.
    Watchdog,
    /// `STATUS=...`: a line for `systemctl status` (one line, no line break).
    Status(&'a str),
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Ready => f.write_str("READY=1"),
            Message::Stopping => f.write_str("STOPPING=1"),
            Message::Watchdog => f.write_str("WATCHDOG=1"),
            Message::Status(text) => write!(f, "STATUS={text}"),
        }
    }
}

/// The socket that notifications go to, from `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddress {
    /// A socket file: `NOTIFY_SOCKET=/run/systemd/notify`.
    Path(PathBuf),
    /// A name in Linux's abstract namespace: `NOTIFY_SOCKET=@name` (the name
    /// here is without the `@`).
    Abstract(Vec<u8>),
}

impl fmt::Display for NotifyAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyAddress::Path(path) => write!(f, "{}", path.display()),
            NotifyAddress::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// What the environment asks of a [`Notifier`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Where to send notifications; `None`: send nothing.
    pub address: Option<NotifyAddress>,
    /// The watchdog period (`WATCHDOG_USEC`) when it applies to this process
    /// and there is a socket to send to; `WATCHDOG=1` is sent every half of it.
    pub watchdog_period: Option<Duration>,
}

impl NotifyConfig {
    /// The configuration that the values of `NOTIFY_SOCKET`, `WATCHDOG_USEC`
    /// and `WATCHDOG_PID` (each `None` when unset) give to process `our_pid`.
    ///
    /// `NOTIFY_SOCKET` must be an absolute path or `@name`; anything else is
    /// logged at warn and ignored. The watchdog applies when `WATCHDOG_USEC`
    /// is a positive number of microseconds and `WATCHDOG_PID` is unset or
    /// `our_pid`; a value that is not a number is logged at warn and ignored.
    pub fn from_values(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        our_pid: u32,
    ) -> NotifyConfig {
        let address = notify_socket.and_then(parse_notify_socket);
        let watchdog_period = address
            .as_ref()
            .and_then(|_| parse_watchdog(watchdog_usec, watchdog_pid, our_pid));
        NotifyConfig {
            address,
            watchdog_period,
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, then removes
    /// them from the environment (see the module docs: call it before
    /// starting threads).
    pub fn take_from_env() -> NotifyConfig {
        let notify_socket = env::var_os(NOTIFY_SOCKET);
        let watchdog_usec = lossy_var(WATCHDOG_USEC);
        let watchdog_pid = lossy_var(WATCHDOG_PID);
        for name in [NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID] {
            env::remove_var(name);
        }
        NotifyConfig::from_values(
            notify_socket.as_deref(),
            watchdog_usec.as_deref(),
            watchdog_pid.as_deref(),
            std::process::id(),
        )
    }
}

fn lossy_var(name: &str) -> Option<String> {
    env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

fn parse_notify_socket(value: &OsStr) -> Option<NotifyAddress> {
    let bytes = value.as_bytes();
    match bytes.first() {
        None => None,
        Some(b'/') => Some(NotifyAddress::Path(PathBuf::from(value))),
        Some(b'@') if bytes.len() > 1 => Some(NotifyAddress::Abstract(bytes[1..].to_vec())),
        Some(_) => {
            log::warn!(
                "NOTIFY_SOCKET={} is neither an absolute path nor @name: not notifying systemd",
                value.to_string_lossy()
            );
            None
        }
    }
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec = usec?;
    let Ok(micros) = usec.trim().parse::<u64>() else {
        log::warn!("WATCHDOG_USEC={usec} is not a number of microseconds: no watchdog");
        return None;
    };
    if micros == 0 {
        return None;
    }
    if let Some(pid) = pid {
        match pid.trim().parse::<u32>() {
            Ok(pid) if pid == our_pid => {}
            Ok(_) => return None,
            Err(_) => {
                log::warn!("WATCHDOG_PID={pid} is not a process id: no watchdog");
                return None;
            }
        }
    }
    Some(Duration::from_micros(micros))
}

/// Sends systemd notifications (`sd_notify`) as the environment asked, and
/// keeps the watchdog fed from its own thread until dropped.
///
/// Every method returns at once: the socket is non-blocking, and a message
/// that cannot be delivered is dropped (the first such failure is logged at
/// warn, later ones at debug).
#[derive(Debug)]
pub struct Notifier {
    channel: Option<Arc<Channel>>,
    watchdog: Option<Watchdog>,
    watchdog_interval: Option<Duration>,
}

#[derive(Debug)]
struct Channel {
    socket: UnixDatagram,
    address: UnixSocketAddr,
    name: String,
    warned: AtomicBool,
}

#[derive(Debug)]
struct Watchdog {
    /// Dropping it stops the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// A notifier configured from the environment, whose variables it
    /// removes ([`NotifyConfig::take_from_env`]); call it before starting
    /// threads.
    pub fn from_env() -> Notifier {
        Notifier::new(NotifyConfig::take_from_env())
    }

    /// A notifier for `config`; starts the watchdog thread when the config
    /// has a watchdog period.
    pub fn new(config: NotifyConfig) -> Notifier {
        let Some(address) = config.address else {
            return Notifier::disabled();
        };
        let channel = match Channel::open(&address) {
            Ok(channel) => Arc::new(channel),
            Err(e) => {
                log::warn!("cannot notify systemd at {address}: {e}; serving goes on");
                return Notifier::disabled();
            }
        };
        let watchdog_interval = config.watchdog_period.map(|period| period / 2);
        let watchdog = watchdog_interval.and_then(|interval| {
            match Watchdog::start(Arc::clone(&channel), interval) {
                Ok(watchdog) => Some(watchdog),
                Err(e) => {
                    log::warn!("cannot start the systemd watchdog thread: {e}");
                    None
                }
            }
        });
        Notifier {
            channel: Some(channel),
            watchdog_interval: watchdog.as_ref().and(watchdog_interval),
            watchdog,
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            channel: None,
            watchdog: None,
            watchdog_interval: None,
        }
    }

    /// Whether notifications are sent at all.
    pub fn is_enabled(&self) -> bool {
        self.channel.is_some()
    }

    /// How often the watchdog thread sends `WATCHDOG=1`, if it runs.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// Sends `READY=1`: the service listens (send it after the `listening
    /// on` lines).
    pub fn ready(&self) {
        self.send(&Message::Ready);
    }

    /// Sends `STOPPING=1`: a shutdown has begun.
    pub fn stopping(&self) {
        self.send(&Message::Stopping);
    }

    /// Sends `STATUS=text`, shown by `systemctl status`. Line breaks in
    /// `text` become spaces, so it cannot add other assignments.
    pub fn status(&self, text: &str) {
        let one_line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send(&Message::Status(&one_line));
    }

    fn send(&self, state: &Message<'_>) {
        if let Some(channel) = &self.channel {
            channel.send(state);
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.stop();
        }
    }
}

impl Channel {
    fn open(address: &NotifyAddress) -> io::Result<Channel> {
        let unix_address = match address {
            NotifyAddress::Path(path) => UnixSocketAddr::from_pathname(path)?,
            NotifyAddress::Abstract(name) => UnixSocketAddr::from_abstract_name(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Channel {
            socket,
            address: unix_address,
            name: address.to_string(),
            warned: AtomicBool::new(false),
        })
    }

    fn send(&self, state: &Message<'_>) {
        let message = format!("{state}\n");
        let result = self.socket.send_to_addr(message.as_bytes(), &self.address);
        let problem = match result {
            Ok(n) if n == message.len() => return,
            Ok(_) => io::Error::new(ErrorKind::WriteZero, "the message was cut short"),
            Err(e) => e,
        };
        if self.warned.swap(true, Ordering::Relaxed) {
            log::debug!("cannot notify systemd at {}: {problem}", self.name);
        } else {
            log::warn!(
                "cannot notify systemd at {}: {problem}; serving goes on (logged once)",
                self.name
            );
        }
    }
}

impl Watchdog {
    fn start(channel: Arc<Channel>, interval: Duration) -> io::Result<Watchdog> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("socketserver-watchdog".to_string())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    channel.send(&Message::Watchdog);
                    next = crate::deadline::later(next, interval);
                    let now = Instant::now();
                    if next <= now {
                        // Fell behind (the machine was suspended, or busy):
                        // restart the schedule rather than send a burst.
                        next = crate::deadline::later(now, interval);
                    }
                    match stopped.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Watchdog {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Socket activation

/// A socket passed by socket activation, of the kind read from the socket.
#[derive(Debug)]
pub enum InheritedSocket {
    /// A listening TCP socket.
    Tcp(TcpListener),
    /// A UDP socket.
    Udp(UdpSocket),
    /// A listening Unix stream socket.
    UnixStream(UnixListener),
    /// A Unix datagram socket.
    UnixDatagram(UnixDatagram),
}

impl InheritedSocket {
    /// The kind, as a word: `tcp`, `udp`, `unix` (stream) or `unixgram`.
    pub fn kind(&self) -> &'static str {
        match self {
            InheritedSocket::Tcp(_) => "tcp",
            InheritedSocket::Udp(_) => "udp",
            InheritedSocket::UnixStream(_) => "unix",
            InheritedSocket::UnixDatagram(_) => "unixgram",
        }
    }
}

impl InheritedSocket {
    /// The transport it serves, the scheme of its URL.
    pub fn scheme(&self) -> crate::transport::Scheme {
        use crate::transport::Scheme;
        match self {
            InheritedSocket::Tcp(_) => Scheme::Tcp,
            InheritedSocket::Udp(_) => Scheme::Udp,
            InheritedSocket::UnixStream(_) => Scheme::Unix,
            InheritedSocket::UnixDatagram(_) => Scheme::Unixgram,
        }
    }
}

/// The socket's descriptor, to serve on with
/// [`Server::from_listener`](crate::Server::from_listener).
impl From<InheritedSocket> for OwnedFd {
    fn from(socket: InheritedSocket) -> OwnedFd {
        match socket {
            InheritedSocket::Tcp(s) => s.into(),
            InheritedSocket::Udp(s) => s.into(),
            InheritedSocket::UnixStream(s) => s.into(),
            InheritedSocket::UnixDatagram(s) => s.into(),
        }
    }
}

impl AsFd for InheritedSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            InheritedSocket::Tcp(s) => s.as_fd(),
            InheritedSocket::Udp(s) => s.as_fd(),
            InheritedSocket::UnixStream(s) => s.as_fd(),
            InheritedSocket::UnixDatagram(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for InheritedSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The descriptors that socket activation passes to process `our_pid`, given
/// the values of `LISTEN_PID` and `LISTEN_FDS` (each `None` when unset).
///
/// An empty range (`3..3`) means no activation: a variable unset or empty,
/// `LISTEN_PID` naming another process, or `LISTEN_FDS=0`. A value that is
/// not a number is an error, as is a count that runs past the largest
/// descriptor.
pub fn activation_fds(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> io::Result<Range<RawFd>> {
    let none = LISTEN_FDS_START..LISTEN_FDS_START;
    let (Some(pid), Some(count)) = (listen_pid, listen_fds) else {
        return Ok(none);
    };
    let (pid, count) = (pid.trim(), count.trim());
    if pid.is_empty() || count.is_empty() {
        return Ok(none);
    }
    let pid: u32 = pid.parse().map_err(|_| {
        invalid(format!(
            "LISTEN_PID={pid} is not a process id (socket activation)"
        ))
    })?;
    if pid != our_pid {
        return Ok(none);
    }
    let count: u32 = count.parse().map_err(|_| {
        invalid(format!(
            "LISTEN_FDS={count} is not a number of descriptors (socket activation)"
        ))
    })?;
    let end = i32::try_from(count)
        .ok()
        .and_then(|count| LISTEN_FDS_START.checked_add(count))
        .ok_or_else(|| {
            invalid(format!(
                "LISTEN_FDS={count} is more descriptors than can exist"
            ))
        })?;
    Ok(LISTEN_FDS_START..end)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidInput, message)
}

/// Takes the sockets passed by socket activation, in descriptor order, when
/// `LISTEN_PID` is this process and `LISTEN_FDS` > 0; an empty list when
/// there is no activation.
///
/// Removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment in every case, so a second call finds nothing (see the module
/// docs: call it before starting threads). Each socket is marked
/// close-on-exec; a stream socket that is not listening is made to listen
/// with a backlog of [`INHERITED_BACKLOG`]. `LISTEN_FDNAMES` is ignored.
///
/// Fails, naming the descriptor, when one is not open, is not a socket, or
/// is a socket of another kind than TCP, UDP, Unix stream or Unix datagram;
/// and when a variable is not a number ([`activation_fds`]).
pub fn inherited_sockets() -> io::Result<Vec<InheritedSocket>> {
    let listen_pid = lossy_var(LISTEN_PID);
    let listen_fds = lossy_var(LISTEN_FDS);
    for name in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES] {
        env::remove_var(name);
    }
    let fds = activation_fds(
        listen_pid.as_deref(),
        listen_fds.as_deref(),
        std::process::id(),
    )?;
    fds.map(|fd| {
        // SAFETY: socket activation hands descriptors 3.. to this process,
        // which has not used them: the variables naming them are removed
        // above, so no other call takes them again.
        unsafe { adopt(fd) }
    })
    .collect()
}

/// Takes ownership of `fd` as an inherited socket.
///
/// # Safety
///
/// `fd` must not be owned by anything else in the process: it is closed when
/// the result (or the error) is dropped.
unsafe fn adopt(fd: RawFd) -> io::Result<InheritedSocket> {
    // SAFETY: fcntl only reads the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("descriptor {fd} passed by LISTEN_FDS is not open: {e}"),
        ));
    }
    // SAFETY: the descriptor is open and, by the caller's promise, ours.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let context = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("descriptor {fd} passed by LISTEN_FDS: {what}: {e}"),
        )
    };
    let kind = match socket.r#type() {
        Ok(kind) => kind,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err(invalid(format!(
                "descriptor {fd} passed by LISTEN_FDS is not a socket"
            )));
        }
        Err(e) => return Err(context("cannot read its socket type", e)),
    };
    let domain = socket
        .domain()
        .map_err(|e| context("cannot read its address family", e))?;
    socket
        .set_cloexec(true)
        .map_err(|e| context("cannot mark it close-on-exec", e))?;
    let inet = domain == Domain::IPV4 || domain == Domain::IPV6;
    let unix = domain == Domain::UNIX;
    if (inet || unix) && kind == Type::STREAM {
        let listening = socket
            .is_listener()
            .map_err(|e| context("cannot tell whether it listens", e))?;
        if !listening {
            socket.listen(INHERITED_BACKLOG).map_err(|e| {
                context(
                    "a stream socket that is not listening, and cannot be made to \
                     (a connected socket, as with Accept=yes, is not served)",
                    e,
                )
            })?;
        }
    }
    let owned = OwnedFd::from(socket);
    Ok(match (inet, unix, kind) {
        (true, _, Type::STREAM) => InheritedSocket::Tcp(TcpListener::from(owned)),
        (true, _, Type::DGRAM) => InheritedSocket::Udp(UdpSocket::from(owned)),
        (_, true, Type::STREAM) => InheritedSocket::UnixStream(UnixListener::from(owned)),
        (_, true, Type::DGRAM) => InheritedSocket::UnixDatagram(UnixDatagram::from(owned)),
        _ => {
            return Err(invalid(format!(
                "descriptor {fd} passed by LISTEN_FDS is a socket of a kind not served \
                 ({domain:?}, {kind:?}): only TCP, UDP, Unix stream and Unix datagram"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::IntoRawFd;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Mutex, Once};

    /// A directory of its own for one test, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = env::temp_dir().join(format!(
                "socketserver-systemd-{}-{n}-{test}",
                std::process::id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Log records of this module, captured for the tests that check what
    /// is logged.
    struct Capture(Mutex<Vec<(log::Level, String)>>);

    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

    impl log::Log for Capture {
        fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if record
                .target()
                .starts_with(module_path!().trim_end_matches("::tests"))
            {
                let mut records = self.0.lock().unwrap();
                records.push((record.level(), record.args().to_string()));
            }
        }
        fn flush(&self) {}
    }

    /// Starts capturing (once for the whole test binary).
    fn capture_logs() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            log::set_logger(&CAPTURE).expect("no other logger in the unit tests");
            log::set_max_level(log::LevelFilter::Trace);
        });
    }

    /// The captured records whose message mentions `needle`.
    fn logged(needle: &str) -> Vec<(log::Level, String)> {
        let records = CAPTURE.0.lock().unwrap();
        records
            .iter()
            .filter(|(_, message)| message.contains(needle))
            .cloned()
            .collect()
    }

    fn receiver(path: &Path) -> UnixDatagram {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
    }

    fn next_message(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Asserts that no message waits on `socket` (it is left non-blocking).
    fn assert_nothing_queued(socket: &UnixDatagram) {
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            socket.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }

    fn config_for(path: &Path, watchdog_usec: Option<&str>) -> NotifyConfig {
        NotifyConfig::from_values(Some(path.as_os_str()), watchdog_usec, None, 42)
    }

    // -- What the variables mean -----------------------------------------

    #[test]
    fn notify_socket_values() {
        let path = |v: &str| NotifyConfig::from_values(Some(OsStr::new(v)), None, None, 1).address;
        assert_eq!(
            path("/run/systemd/notify"),
            Some(NotifyAddress::Path(PathBuf::from("/run/systemd/notify")))
        );
        assert_eq!(
            path("@/org/freedesktop/systemd1/notify/123"),
            Some(NotifyAddress::Abstract(
                b"/org/freedesktop/systemd1/notify/123".to_vec()
            ))
        );
        assert_eq!(path(""), None);
        assert_eq!(path("@"), None);
        assert_eq!(path("relative/notify"), None);
        assert_eq!(
            NotifyConfig::from_values(None, Some("1000"), None, 1),
            NotifyConfig::default()
        );
    }

    #[test]
    fn watchdog_values() {
        let period = |usec: Option<&str>, pid: Option<&str>| {
            NotifyConfig::from_values(Some(OsStr::new("/n")), usec, pid, 77).watchdog_period
        };
        assert_eq!(period(Some("2000000"), None), Some(Duration::from_secs(2)));
        assert_eq!(
            period(Some("2000000"), Some("77")),
            Some(Duration::from_secs(2))
        );
        // For another process, off, or nonsense: no watchdog.
        assert_eq!(period(Some("2000000"), Some("78")), None);
        assert_eq!(period(Some("0"), None), None);
        assert_eq!(period(Some("soon"), None), None);
        assert_eq!(period(Some("2000000"), Some("me")), None);
        assert_eq!(period(None, Some("77")), None);
        // No socket to send to: no watchdog either.
        assert_eq!(
            NotifyConfig::from_values(None, Some("2000000"), None, 77).watchdog_period,
            None
        );
    }

    #[test]
    fn activation_values() {
        assert_eq!(activation_fds(Some("7"), Some("3"), 7).unwrap(), 3..6);
        assert_eq!(activation_fds(Some(" 7 "), Some("1\n"), 7).unwrap(), 3..4);
        // No activation: unset, empty, another process, zero descriptors.
        for (pid, fds) in [
            (None, Some("2")),
            (Some("7"), None),
            (Some(""), Some("2")),
            (Some("7"), Some("")),
            (Some("8"), Some("2")),
            (Some("7"), Some("0")),
        ] {
            assert!(
                activation_fds(pid, fds, 7).unwrap().is_empty(),
                "{pid:?} {fds:?}"
            );
        }
        // Nonsense is an error that names the variable.
        let error = |pid, fds| {
            activation_fds(Some(pid), Some(fds), 7)
                .unwrap_err()
                .to_string()
        };
        assert!(error("seven", "2").contains("LISTEN_PID=seven"));
        assert!(error("7", "-1").contains("LISTEN_FDS=-1"));
        assert!(error("7", "two").contains("LISTEN_FDS=two"));
        assert!(error("7", "4294967295").contains("more descriptors than can exist"));
        // Another process's nonsense count is not ours to judge.
        assert!(activation_fds(Some("8"), Some("two"), 7)
            .unwrap()
            .is_empty());
    }

    // -- Notifications ----------------------------------------------------

    #[test]
    fn ready_status_and_stopping_reach_the_socket() {
        let dir = TempDir::new("notify");
        let path = dir.join("notify.sock");
        let manager = receiver(&path);
        let notifier = Notifier::new(config_for(&path, None));
        assert!(notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready();
        notifier.status("serving 3 listeners\nSTOPPING=1");
        notifier.stopping();
        assert_eq!(next_message(&manager), "READY=1\n");
        assert_eq!(
            next_message(&manager),
            "STATUS=serving 3 listeners STOPPING=1\n"
        );
        assert_eq!(next_message(&manager), "STOPPING=1\n");
        // No watchdog was asked for, so nothing else arrives.
        assert_nothing_queued(&manager);
    }

    #[test]
    fn an_abstract_socket_is_reached() {
        let name = format!("socketserver-test-{}-abstract", std::process::id());
        let address = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&address).unwrap();
        manager
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let value = format!("@{name}");
        let config = NotifyConfig::from_values(Some(OsStr::new(&value)), None, None, 1);
        Notifier::new(config).ready();
        assert_eq!(next_message(&manager), "READY=1\n");
    }

    #[test]
    fn the_watchdog_is_fed_every_half_period() {
        let dir = TempDir::new("watchdog");
        let path = dir.join("notify.sock");
        let manager = receiver(&path);
        // WATCHDOG_USEC of 0.6 s: WATCHDOG=1 every 0.3 s.
        let notifier = Notifier::new(config_for(&path, Some("600000")));
        assert_eq!(
            notifier.watchdog_interval(),
            Some(Duration::from_millis(300))
        );
        let mut arrivals = Vec::new();
        while arrivals.len() < 4 {
            assert_eq!(next_message(&manager), "WATCHDOG=1\n");
            arrivals.push(Instant::now());
        }
        for gap in arrivals.windows(2).map(|w| w[1] - w[0]) {
            assert!(gap >= Duration::from_millis(200), "gap {gap:?}");
            // Within the period itself, which is what systemd enforces.
            assert!(gap <= Duration::from_millis(600), "gap {gap:?}");
        }
        // Dropping the notifier stops the thread: nothing more arrives.
        drop(notifier);
        manager
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(manager.recv(&mut buf).is_err());
    }

    #[test]
    fn an_unreachable_socket_is_logged_once_and_serving_goes_on() {
        capture_logs();
        let dir = TempDir::new("unreachable");
        let path = dir.join("nobody-listens-here.sock");
        let name = path.display().to_string();
        let notifier = Notifier::new(config_for(&path, None));
        assert!(notifier.is_enabled());
        notifier.ready();
        notifier.status("still here");
        notifier.stopping();
        let records = logged(&name);
        let warnings: Vec<_> = records
            .iter()
            .filter(|(level, _)| *level == log::Level::Warn)
            .collect();
        assert_eq!(warnings.len(), 1, "{records:?}");
        assert!(warnings[0].1.contains("serving goes on"));
        assert_eq!(records.len(), 3, "one warning, then quieter: {records:?}");
    }

    #[test]
    fn a_manager_that_never_reads_blocks_nothing() {
        capture_logs();
        let dir = TempDir::new("full");
        let path = dir.join("notify.sock");
        let _manager = receiver(&path);
        let notifier = Notifier::new(config_for(&path, None));
        // Far more messages than the socket's queue holds.
        let started = Instant::now();
        for i in 0..5_000 {
            notifier.status(&format!("message {i}"));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let warnings = logged(&path.display().to_string());
        assert_eq!(warnings.first().map(|w| w.0), Some(log::Level::Warn));
    }

    #[test]
    fn a_notifier_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Notifier>();
        shareable::<InheritedSocket>();
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        let notifier = Notifier::new(NotifyConfig::from_values(None, Some("1000"), None, 1));
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready();
        notifier.stopping();
    }

    // -- Taking inherited sockets ------------------------------------------

    /// Adopts a descriptor this test owns.
    fn adopt_owned(fd: impl IntoRawFd) -> io::Result<InheritedSocket> {
        // SAFETY: into_raw_fd gave up the only owner.
        unsafe { adopt(fd.into_raw_fd()) }
    }

    /// The path a Unix socket is bound to, for a report.
    fn path_of(address: &std::os::unix::net::SocketAddr) -> String {
        address.as_pathname().unwrap().display().to_string()
    }

    fn is_cloexec(fd: RawFd) -> bool {
        // SAFETY: reads the flags of a descriptor the test holds.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        flags >= 0 && flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn each_kind_is_read_from_the_socket() {
        let dir = TempDir::new("kinds");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix = UnixListener::bind(dir.join("s")).unwrap();
        let unixgram = UnixDatagram::bind(dir.join("d")).unwrap();
        let kinds: Vec<&str> = [
            adopt_owned(tcp),
            adopt_owned(udp),
            adopt_owned(unix),
            adopt_owned(unixgram),
        ]
        .iter()
        .map(|s| s.as_ref().unwrap().kind())
        .collect();
        assert_eq!(kinds, ["tcp", "udp", "unix", "unixgram"]);
    }

    #[test]
    fn a_stream_socket_not_listening_is_made_to_listen() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        socket.set_cloexec(false).unwrap();
        let adopted = adopt_owned(OwnedFd::from(socket)).unwrap();
        assert!(is_cloexec(adopted.as_raw_fd()));
        let InheritedSocket::Tcp(listener) = adopted else {
            panic!("not tcp: {adopted:?}");
        };
        let _client = TcpStream::connect(addr).unwrap();
        listener.accept().unwrap();

        let dir = TempDir::new("unlistened");
        let unix = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        unix.bind(&socket2::SockAddr::unix(dir.join("s")).unwrap())
            .unwrap();
        let adopted = adopt_owned(OwnedFd::from(unix)).unwrap();
        assert!(socket2::SockRef::from(&adopted).is_listener().unwrap());
    }

    #[test]
    fn a_file_is_not_a_socket() {
        let dir = TempDir::new("file");
        let file = File::create(dir.join("plain")).unwrap();
        let fd = file.as_raw_fd();
        let error = adopt_owned(file).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("descriptor {fd} passed by LISTEN_FDS is not a socket")
        );
    }

    #[test]
    fn other_socket_kinds_are_refused_by_name() {
        let (connected, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let error = adopt_owned(connected).unwrap_err().to_string();
        assert!(error.contains("Accept=yes"), "{error}");

        let seqpacket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let error = adopt_owned(OwnedFd::from(seqpacket))
            .unwrap_err()
            .to_string();
        assert!(error.contains("a kind not served"), "{error}");
    }

    // -- The real thing, in a child process ----------------------------------

    /// Set in the environment of the child processes below.
    const CHILD: &str = "SOCKETSERVER_SYSTEMD_TEST_CHILD";

    /// Runs one of the ignored `*_child` tests below in a new process of this
    /// test binary, with `fds` as its descriptors 3, 4, ... (as systemd
    /// passes them), `LISTEN_PID` set to its own pid and `envs` set; returns
    /// the lines it printed with `REPORT `, without that prefix.
    fn run_child(entry: &str, fds: &[RawFd], envs: &[(&str, &OsStr)]) -> Vec<String> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            // $$ is the shell's pid, which exec keeps for the test binary.
            .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"")
            .arg(env::current_exe().unwrap())
            .args(["--exact", entry, "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in envs {
            command.env(name, value);
        }
        let sources = fds.to_vec();
        const MOST: usize = 16;
        assert!(sources.len() <= MOST);
        // SAFETY: between fork and exec the closure makes only
        // async-signal-safe calls (fcntl, dup2) and does not allocate.
        unsafe {
            command.pre_exec(move || {
                // First move every source out of the way (a source may be
                // one of the targets), then put each at 3, 4, ...; dup2
                // leaves the targets open across exec.
                let mut moved = [0 as RawFd; MOST];
                for (slot, &source) in moved.iter_mut().zip(&sources) {
                    *slot = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, 100);
                    if *slot < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                for (i, &high) in moved[..sources.len()].iter().enumerate() {
                    if libc::dup2(high, LISTEN_FDS_START + i as RawFd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let output = wait_bounded(command.spawn().unwrap(), Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            // The harness may have written "test NAME ... " on the same line.
            .filter_map(|line| line.split_once("REPORT "))
            .map(|(_, report)| report.to_string())
            .collect()
    }

    fn wait_bounded(child: std::process::Child, limit: Duration) -> Output {
        let pid = child.id() as libc::pid_t;
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        match finished.recv_timeout(limit) {
            Ok(output) => output.unwrap(),
            Err(_) => {
                // SAFETY: kills the child this test started, by its pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the child process did not finish within {limit:?}");
            }
        }
    }

    fn variable_report(names: &[&str]) {
        for name in names {
            let state = if env::var_os(name).is_some() {
                "set"
            } else {
                "unset"
            };
            println!("REPORT env {name} {state}");
        }
    }

    #[test]
    #[ignore = "the child process of sockets_are_inherited_from_a_parent"]
    fn activation_child() {
        if env::var_os(CHILD).is_none() {
            return;
        }
        match inherited_sockets() {
            Ok(sockets) => {
                for socket in &sockets {
                    let fd = socket.as_raw_fd();
                    let address = match socket {
                        InheritedSocket::Tcp(s) => s.local_addr().unwrap().to_string(),
                        InheritedSocket::Udp(s) => s.local_addr().unwrap().to_string(),
                        InheritedSocket::UnixStream(s) => path_of(&s.local_addr().unwrap()),
                        InheritedSocket::UnixDatagram(s) => path_of(&s.local_addr().unwrap()),
                    };
                    let listening = socket2::SockRef::from(socket).is_listener().unwrap();
                    println!(
                        "REPORT socket {fd} {} {address} listening={listening} cloexec={}",
                        socket.kind(),
                        is_cloexec(fd)
                    );
                }
            }
            Err(e) => println!("REPORT error {e}"),
        }
        variable_report(&[LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES]);
        let again = inherited_sockets().map(|s| s.len());
        println!("REPORT again {again:?}");
    }

    #[test]
    fn sockets_are_inherited_from_a_parent() {
        let dir = TempDir::new("inherit");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let unlistened = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        unlistened
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let unlistened_addr = unlistened.local_addr().unwrap().as_socket().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix = UnixListener::bind(dir.join("stream.sock")).unwrap();
        let unixgram = UnixDatagram::bind(dir.join("dgram.sock")).unwrap();

        let fds = [
            tcp.as_raw_fd(),
            unlistened.as_raw_fd(),
            udp.as_raw_fd(),
            unix.as_raw_fd(),
            unixgram.as_raw_fd(),
        ];
        let report = run_child(
            "ops::systemd::tests::activation_child",
            &fds,
            &[
                (LISTEN_FDS, OsStr::new("5")),
                (LISTEN_FDNAMES, OsStr::new("a:b:c:d:e")),
            ],
        );
        let expected = [
            format!(
                "socket 3 tcp {} listening=true cloexec=true",
                tcp.local_addr().unwrap()
            ),
            format!("socket 4 tcp {unlistened_addr} listening=true cloexec=true"),
            format!(
                "socket 5 udp {} listening=false cloexec=true",
                udp.local_addr().unwrap()
            ),
            format!(
                "socket 6 unix {} listening=true cloexec=true",
                dir.join("stream.sock").display()
            ),
            format!(
                "socket 7 unixgram {} listening=false cloexec=true",
                dir.join("dgram.sock").display()
            ),
            "env LISTEN_PID unset".to_string(),
            "env LISTEN_FDS unset".to_string(),
            "env LISTEN_FDNAMES unset".to_string(),
            "again Ok(0)".to_string(),
        ];
        assert_eq!(report, expected);
        // The child made the shared socket listen: it accepts here too.
        assert!(unlistened.is_listener().unwrap());
        TcpStream::connect(unlistened_addr).unwrap();
    }

    #[test]
    fn a_descriptor_that_is_not_a_socket_is_named_in_the_error() {
        let dir = TempDir::new("notsocket");
        let file = File::create(dir.join("plain")).unwrap();
        let report = run_child(
            "ops::systemd::tests::activation_child",
            &[file.as_raw_fd()],
            &[(LISTEN_FDS, OsStr::new("1"))],
        );
        assert_eq!(
            report,
            [
                "error descriptor 3 passed by LISTEN_FDS is not a socket",
                "env LISTEN_PID unset",
                "env LISTEN_FDS unset",
                "env LISTEN_FDNAMES unset",
                "again Ok(0)",
            ]
        );
    }

    #[test]
    #[ignore = "the child process of notifications_from_the_environment"]
    fn notify_child() {
        if env::var_os(CHILD).is_none() {
            return;
        }
        let notifier = Notifier::from_env();
        println!(
            "REPORT enabled={} watchdog={:?}",
            notifier.is_enabled(),
            notifier.watchdog_interval()
        );
        variable_report(&[NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID]);
        notifier.ready();
        notifier.status("from the child");
        notifier.stopping();
    }

    #[test]
    fn notifications_from_the_environment() {
        let dir = TempDir::new("fromenv");
        let path = dir.join("notify.sock");
        let manager = receiver(&path);
        let report = run_child(
            "ops::systemd::tests::notify_child",
            &[],
            &[
                (NOTIFY_SOCKET, path.as_os_str()),
                (WATCHDOG_USEC, OsStr::new("20000000")),
            ],
        );
        assert_eq!(
            report,
            [
                "enabled=true watchdog=Some(10s)",
                "env NOTIFY_SOCKET unset",
                "env WATCHDOG_USEC unset",
                "env WATCHDOG_PID unset",
            ]
        );
        // The child has exited: everything it sent is queued here.
        manager.set_nonblocking(true).unwrap();
        let mut messages = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = manager.recv(&mut buf) {
            messages.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        // The watchdog's first WATCHDOG=1 may come anywhere among the others.
        let others: Vec<&str> = messages
            .iter()
            .map(String::as_str)
            .filter(|m| *m != "WATCHDOG=1\n")
            .collect();
        assert_eq!(
            others,
            ["READY=1\n", "STATUS=from the child\n", "STOPPING=1\n"]
        );
        assert!(messages.iter().any(|m| m == "WATCHDOG=1\n"), "{messages:?}");
    }

    #[test]
    fn a_watchdog_for_another_process_is_not_fed() {
        let dir = TempDir::new("otherpid");
        let path = dir.join("notify.sock");
        let manager = receiver(&path);
        let config = NotifyConfig::from_values(
            Some(path.as_os_str()),
            Some("200000"),
            Some(&(std::process::id() + 1).to_string()),
            std::process::id(),
        );
        let notifier = Notifier::new(config);
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready();
        assert_eq!(next_message(&manager), "READY=1\n");
        assert_nothing_queued(&manager);
    }
}
