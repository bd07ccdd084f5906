//! Graceful shutdown on SIGINT and SIGTERM, through `ctrlc`.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;

use parking_lot::Mutex;

use super::control::ServerHandle;

/// The servers that the signal handler shuts down.
static REGISTERED: OnceLock<Mutex<Vec<ServerHandle>>> = OnceLock::new();
/// Signals received so far.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

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

fn on_signal() {
    let Some(servers) = REGISTERED.get() else {
        return;
    };
    if RECEIVED.fetch_add(1, SeqCst) > 0 {
        log::warn!("second interrupt: exiting at once");
        std::process::exit(130);
    }
    let servers = servers.lock();
    let delay = servers
        .iter()
        .map(|server| server.options().drain_delay)
        .max()
        .unwrap_or_default();
    if delay.is_zero() {
        log::info!("interrupt: shutting down (again to exit at once)");
    } else {
        log::info!(
            "interrupt: draining for {:.3} s, then shutting down (again to exit at once)",
            delay.as_secs_f64()
        );
    }
    for server in servers.iter() {
        server.drain();
    }
}
