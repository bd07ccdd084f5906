//! Where the program's log lines go and how they look: standard error,
//! through `env_logger`, as text or as one JSON object per line; the level
//! from `-v`/`-q`, or from `RUST_LOG` when it is set.

use std::io::Write;

/// How log lines look.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `[TIME LEVEL TARGET] MESSAGE`, env_logger's format.
    Text,
    /// `{"time":...,"level":...,"target":...,"message":...}`, one object per line.
    Json,
}

/// The level filter for `verbose` -v and `quiet` -q flags: warn by default,
/// each -v one level more (info, debug, trace), each -q one less (error,
/// off).
pub fn level(verbose: u8, quiet: u8) -> &'static str {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let index = (2 + i32::from(verbose) - i32::from(quiet)).clamp(0, 5);
    LEVELS[index as usize]
}

/// One log record as a JSON object on one line.
pub fn json_line(time: &str, level: log::Level, target: &str, message: &str) -> String {
    serde_json::json!({
        "time": time,
        "level": level.as_str(),
        "target": target,
        "message": message,
    })
    .to_string()
}

/// Sets up the logger: `RUST_LOG` when set, else the level of the flags.
pub fn init(verbose: u8, quiet: u8, format: LogFormat) {
    let env = env_logger::Env::default().default_filter_or(level(verbose, quiet));
    let mut builder = env_logger::Builder::from_env(env);
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let time = buf.timestamp_millis().to_string();
            let message = record.args().to_string();
            writeln!(
                buf,
                "{}",
                json_line(&time, record.level(), record.target(), &message)
            )
        });
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_move_the_level_from_warn() {
        assert_eq!(level(0, 0), "warn");
        assert_eq!(level(1, 0), "info");
        assert_eq!(level(2, 0), "debug");
        assert_eq!(level(3, 0), "trace");
        assert_eq!(level(9, 0), "trace");
        assert_eq!(level(0, 1), "error");
        assert_eq!(level(0, 2), "off");
        assert_eq!(level(0, 9), "off");
        assert_eq!(level(1, 1), "warn");
    }

    #[test]
    fn a_json_line_is_one_object_with_the_four_fields() {
        let line = json_line(
            "2025-01-01T12:00:00.000Z",
            log::Level::Warn,
            "socketserver::request::handler",
            "127.0.0.1:5000: handler error: \"quoted\"\nand a second line",
        );
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2025-01-01T12:00:00.000Z");
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["target"], "socketserver::request::handler");
        assert_eq!(
            value["message"],
            "127.0.0.1:5000: handler error: \"quoted\"\nand a second line"
        );
        assert_eq!(value.as_object().unwrap().len(), 4);
    }
}
