//! What every command shares: errors and exit codes, reading messages,
//! size and duration parsing.

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::time::Duration;

use socketserver::client::WrongProtocol;
use socketserver::SocketUrl;

/// How a command failed: a usage error exits 2, anything else 1.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Failed(String),
}

impl CliError {
    pub fn report(self) -> ExitCode {
        match self {
            CliError::Usage(why) => {
                eprintln!("error: {why}\n\nFor more information, try '--help'.");
                ExitCode::from(2)
            }
            CliError::Failed(why) => {
                eprintln!("error: {why}");
                ExitCode::from(1)
            }
        }
    }
}

/// The error of a client that asked `url` and got no proper answer within
/// `waited`: a timeout names what was expected (`no answer from URL within
/// 5 s: is it a dict server?`), an answer of another protocol says what came
/// instead, a refusal is prefixed with where it came from, anything else
/// with `no answer from URL`.
pub fn answer_error(url: &SocketUrl, waited: Duration, server: &str, error: io::Error) -> CliError {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CliError::Failed(format!(
            "no answer from {url} within {} s: is it {server}?",
            waited.as_secs_f64()
        )),
        io::ErrorKind::InvalidInput => CliError::Failed(format!("{url}: {error}")),
        _ if WrongProtocol::from_io(&error).is_some() => {
            CliError::Failed(format!("{url}: {error}"))
        }
        _ => CliError::Failed(format!("no answer from {url}: {error}")),
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Calls `send` with each of `args`, or, when there are none, with each line
/// of standard input (without its terminator; bytes that are not UTF-8 are
/// replaced): how the line clients read their messages.
pub fn for_each_message(
    args: &[String],
    mut send: impl FnMut(&str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    if !args.is_empty() {
        return args.iter().try_for_each(|message| send(message));
    }
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    while stdin.read_until(b'\n', &mut line)? > 0 {
        send(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']))?;
        line.clear();
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard limit (to `fs.nr_open`
/// when the hard limit is unlimited), as Go's runtime and nginx do: a server
/// or a load generator of many connections needs a descriptor each. Returns
/// the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut target = limit.rlim_max;
    if target == libc::RLIM_INFINITY {
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(limit.rlim_cur);
    }
    if target > limit.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = target;
    }
    Ok(limit.rlim_cur)
}

/// Parses a byte count with an optional KiB, MiB or GiB suffix (also K, M, G,
/// KB, MB, GB, all meaning powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 1024, 64KiB, 16MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The longest duration any flag takes: a year, in seconds (SPEC rule 6).
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// Parses a duration in seconds, fractions allowed (`0.5`, `10`), at most
/// [`MAX_SECONDS`] (a year); negative values, NaN and infinity are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "{text:?} is not a valid number of seconds (0 to {MAX_SECONDS})"
        ));
    }
    if seconds > MAX_SECONDS as f64 {
        return Err(format!(
            "{text:?} seconds is too long: at most {MAX_SECONDS} (a year)"
        ));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a valid number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn durations_are_at_most_a_year() {
        assert_eq!(
            parse_duration("31536000"),
            Ok(Duration::from_secs(MAX_SECONDS))
        );
        for text in [
            "31536000.5",
            "31536001",
            "1e19",
            "1e400",
            "inf",
            "-inf",
            "NaN",
            "nan",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(text), "{err}");
        }
        assert!(parse_duration("1e19")
            .unwrap_err()
            .contains("at most 31536000"));
    }

    proptest::proptest! {
        #[test]
        fn any_number_is_a_duration_of_at_most_a_year_or_refused(seconds: f64) {
            match parse_duration(&seconds.to_string()) {
                Ok(d) => proptest::prop_assert!(
                    seconds >= 0.0 && d <= Duration::from_secs(MAX_SECONDS)
                ),
                Err(_) => proptest::prop_assert!(
                    !(0.0..=MAX_SECONDS as f64).contains(&seconds)
                ),
            }
        }
    }
}
