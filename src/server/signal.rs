//! Graceful shutdown on SIGINT, SIGTERM and SIGHUP, through `ctrlc`.
//!
//! The first signal [drains](ServerHandle::drain) every registered server
//! (readiness off at once, the shutdown after its drain delay, at once by
//! default) and says so at once, at warn, with what the shutdown waits for:
//!
//! ```text
//! shutting down: waiting up to 10 s for 1 connection (Ctrl-C again to stop now)
//! ```
//!
//! A signal that comes more than [`SAME_SIGNAL`] after the first exits the
//! process at once with status 130. Signals within it are the first one
//! again: GNU `timeout`, and some supervisors, signal the process and then
//! its whole process group, so one request to stop arrives twice.
//!
//! SIGHUP is handled as SIGTERM, on purpose: a server has no configuration
//! to reload, and a hang-up (the terminal that started it closed, or a
//! supervisor's stop) is a request to stop; the drain still lets the work in
//! progress finish. (`ctrlc`'s `termination` feature installs the same
//! handler for all three.)

use std::io;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::control::ServerHandle;

/// Signals within this time of the first are the first one again.
pub(crate) const SAME_SIGNAL: Duration = Duration::from_millis(100);

/// How long the announcement waits for a reactor's loops to say what they
/// left waiting; past it, every open connection is counted.
const CENSUS_WAIT: Duration = Duration::from_millis(500);

/// The servers that the signal handler shuts down.
static REGISTERED: OnceLock<Mutex<Vec<ServerHandle>>> = OnceLock::new();
/// When the first signal was handled.
static FIRST: OnceLock<Instant> = OnceLock::new();

/// Registers `handle`; the first call installs the process's signal handler.
pub(crate) fn shutdown_on_signal(handle: ServerHandle) -> io::Result<()> {
    let mut first = false;
    let servers = REGISTERED.get_or_init(|| {
        first = true;
        Mutex::new(Vec::new())
    });
    servers.lock().push(handle);
    if first {
        ctrlc::set_handler(on_signal)
            .map_err(|e| io::Error::other(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(())
}

/// Returns once the first signal's announcement is written, if one is being
/// made: the handler drains the servers and then says what the shutdown
/// waits for, and a server with nothing in progress would otherwise report
/// and let the process exit between the two. A server calls it as its
/// shutdown begins.
pub(crate) fn announced() {
    if let Some(servers) = REGISTERED.get() {
        drop(servers.lock());
    }
}

fn on_signal() {
    let Some(servers) = REGISTERED.get() else {
        return;
    };
    let now = Instant::now();
    let first = *FIRST.get_or_init(|| now);
    if first != now {
        let since = now.duration_since(first);
        if since < SAME_SIGNAL {
            log::debug!(
                "a second signal {} ms after the first: the same request to stop",
                since.as_millis()
            );
            return;
        }
        log::warn!("second interrupt: exiting at once");
        std::process::exit(130);
    }
    // Held until the announcement is written: see `announced`.
    let servers = servers.lock();
    let mut waiting = 0;
    let mut longest = Duration::ZERO;
    let mut delay = Duration::ZERO;
    for server in servers.iter() {
        server.drain();
        let control = &server.0;
        // A drain that shuts down at once knows what it left waiting (a
        // reactor's loops say which of their connections were idle); one
        // that waits first reports what is in progress now.
        waiting += if control.is_shutdown() {
            control
                .census
                .waiting(Instant::now() + CENSUS_WAIT)
                .unwrap_or_else(|| control.waiting_at_shutdown.load(SeqCst))
        } else {
            control.counters.in_flight.load(SeqCst)
        };
        longest = longest.max(control.options.shutdown_timeout);
        delay = delay.max(control.options.drain_delay);
    }
    log::warn!("{}", announcement(delay, waiting, longest));
}

/// What the first signal says: how long the drain lasts, what the shutdown
/// waits for, and how to cut it short.
fn announcement(delay: Duration, waiting: usize, deadline: Duration) -> String {
    let draining = if delay.is_zero() {
        String::new()
    } else {
        format!("draining for {}, then ", seconds(delay))
    };
    if waiting == 0 && delay.is_zero() {
        return "shutting down: nothing in progress".to_string();
    }
    let plural = if waiting == 1 { "" } else { "s" };
    format!(
        "shutting down: {draining}waiting up to {} for {waiting} connection{plural} \
         (Ctrl-C again to stop now)",
        seconds(deadline)
    )
}

/// `10 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    let text = format!("{:.3}", duration.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_says_what_the_shutdown_waits_for() {
        let now = Duration::ZERO;
        assert_eq!(
            announcement(now, 1, Duration::from_secs(10)),
            "shutting down: waiting up to 10 s for 1 connection (Ctrl-C again to stop now)"
        );
        assert_eq!(
            announcement(now, 3, Duration::from_millis(2500)),
            "shutting down: waiting up to 2.5 s for 3 connections (Ctrl-C again to stop now)"
        );
        assert_eq!(
            announcement(now, 0, Duration::from_secs(10)),
            "shutting down: nothing in progress"
        );
        assert_eq!(
            announcement(Duration::from_secs(5), 0, Duration::from_secs(10)),
            "shutting down: draining for 5 s, then waiting up to 10 s for 0 connections \
             (Ctrl-C again to stop now)"
        );
    }
}
