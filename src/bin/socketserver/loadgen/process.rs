//! What the load generator reads about the server's processes from `/proc`:
//! resident memory, threads and CPU time.

use std::fs;
use std::io;

use serde::Serialize;

/// The memory, threads and CPU time of a local process, from
/// `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcessSample {
    /// The process id.
    pub pid: u32,
    /// Resident memory now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The most resident memory so far, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Threads (`Threads`).
    pub threads: u64,
    /// CPU seconds the process has used since it started, in user and kernel
    /// mode, all its threads together (`utime + stime`).
    pub cpu_s: f64,
}

impl ProcessSample {
    /// Reads `/proc/PID/status` and `/proc/PID/stat` (Linux).
    pub fn read(pid: u32) -> io::Result<ProcessSample> {
        let path = format!("/proc/{pid}/status");
        let status = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
        let field = |name: &str| -> io::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
                .ok_or_else(|| io::Error::other(format!("{path} has no {name} field")))
        };
        Ok(ProcessSample {
            pid,
            rss_kib: field("VmRSS")?,
            peak_rss_kib: field("VmHWM")?,
            threads: field("Threads")?,
            cpu_s: cpu_seconds(pid)?,
        })
    }
}

/// The CPU seconds process `pid` has used, user and kernel mode, all its
/// threads (`utime + stime` of `/proc/PID/stat`, in clock ticks).
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
    let ticks = cpu_ticks(&stat)
        .ok_or_else(|| io::Error::other(format!("{path} is not in the expected form")))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself,
/// so the fields are counted after the last `)`: state is field 3, utime
/// field 14 and stime field 15.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The watched server processes, summed, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSample {
    /// The watched process ids.
    pub pids: Vec<u32>,
    /// Resident memory of them all, in KiB.
    pub rss_kib: u64,
    /// The sum of their peaks of resident memory, in KiB.
    pub peak_rss_kib: u64,
    /// Threads of them all.
    pub threads: u64,
    /// Each process on its own.
    pub processes: Vec<ProcessSample>,
}

impl ServerSample {
    /// Reads every process of `pids`.
    pub fn read(pids: &[u32]) -> io::Result<ServerSample> {
        let processes = pids
            .iter()
            .map(|&pid| ProcessSample::read(pid))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ServerSample {
            pids: pids.to_vec(),
            rss_kib: processes.iter().map(|p| p.rss_kib).sum(),
            peak_rss_kib: processes.iter().map(|p| p.peak_rss_kib).sum(),
            threads: processes.iter().map(|p| p.threads).sum(),
            processes,
        })
    }
}

/// The CPU seconds all of `pids` have used so far; `None` when one of them
/// cannot be read (it exited).
pub fn total_cpu_seconds(pids: &[u32]) -> Option<f64> {
    pids.iter()
        .map(|&pid| cpu_seconds(pid).ok())
        .sum::<Option<f64>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_this_process() {
        let sample = ProcessSample::read(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        assert!(sample.peak_rss_kib >= sample.rss_kib);
        assert!(sample.threads >= 1);
        assert!(sample.cpu_s >= 0.0);
        assert!(ProcessSample::read(u32::MAX).is_err());
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        // Spin until the kernel has counted at least one more tick (10 ms),
        // at most ten seconds.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds(pid).unwrap() <= before
            && start.elapsed() < std::time::Duration::from_secs(10)
        {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        assert!(cpu_seconds(pid).unwrap() > before);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis in it.
        let stat = "1234 (we ird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 200";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("1234 (short"), None);
        assert_eq!(cpu_ticks("1 (x) S 1 2"), None);
    }

    proptest! {
        #[test]
        fn any_command_name_and_times_are_read(
            pid in 1u32..4_000_000,
            name in "[ -~]{0,16}",
            utime in 0u64..1 << 40,
            stime in 0u64..1 << 40,
        ) {
            let stat = format!(
                "{pid} ({name}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 3 0 99 1000 200"
            );
            prop_assert_eq!(cpu_ticks(&stat), Some(utime + stime));
        }

        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,200}") {
            // Never a panic.
            let _ = cpu_ticks(&text);
        }
    }

    #[test]
    fn server_samples_add_up() {
        let me = std::process::id();
        let sample = ServerSample::read(&[me, me]).unwrap();
        assert_eq!(sample.pids, vec![me, me]);
        assert_eq!(sample.processes.len(), 2);
        assert_eq!(
            sample.threads,
            sample.processes[0].threads + sample.processes[1].threads
        );
        assert!(total_cpu_seconds(&[me]).is_some());
        assert!(total_cpu_seconds(&[me, u32::MAX]).is_none());
    }
}
