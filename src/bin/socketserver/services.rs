//! The one table of the program's services: for each, its name, default
//! address, the transports it speaks, its default dispatch mode, the ALPN
//! protocol it offers over TLS and its default idle timeout. `serve`,
//! `client` and their help texts all read it.

use std::time::Duration;

use socketserver::transport::Scheme;

use crate::serve::DispatchMode;

/// A service of the program.
#[derive(Debug)]
pub struct Service {
    /// The subcommand's name.
    pub name: &'static str,
    /// Where it listens (and its client connects) by default.
    pub default_url: &'static str,
    /// The transports it speaks.
    pub schemes: &'static [Scheme],
    /// Its default `--dispatch`: the reactor for services whose
    /// connections mostly idle (keep-alive, a room), a thread per
    /// connection for the others, as in Python.
    pub dispatch: DispatchMode,
    /// The ALPN protocols it offers over TLS.
    pub alpn: &'static [&'static [u8]],
    /// Its `--idle-timeout` when none is given.
    pub idle_timeout: Option<Duration>,
    /// Its client's `--timeout`, in seconds: how long it waits to connect,
    /// for the TLS handshake, and for each answer (chat: to connect only).
    pub client_timeout: &'static str,
}

const STREAMS: &[Scheme] = &[Scheme::Tcp, Scheme::Unix];
const ALL_SCHEMES: &[Scheme] = &[Scheme::Tcp, Scheme::Udp, Scheme::Unix, Scheme::Unixgram];

/// echo-upper.
pub const ECHO_UPPER: Service = Service {
    name: "echo-upper",
    default_url: "tcp://127.0.0.1:9000",
    schemes: ALL_SCHEMES,
    dispatch: DispatchMode::Threads,
    alpn: &[],
    idle_timeout: None,
    client_timeout: "10",
};

/// The Q&A bot.
pub const QA: Service = Service {
    name: "qa",
    default_url: "tcp://127.0.0.1:9001",
    schemes: STREAMS,
    dispatch: DispatchMode::Threads,
    alpn: &[],
    idle_timeout: None,
    client_timeout: "10",
};

/// The dictionary.
pub const DICT: Service = Service {
    name: "dict",
    default_url: "udp://127.0.0.1:9002",
    schemes: ALL_SCHEMES,
    dispatch: DispatchMode::Threads,
    alpn: &[],
    idle_timeout: None,
    client_timeout: "5",
};

/// Remote command execution.
pub const EXEC: Service = Service {
    name: "exec",
    default_url: "tcp://127.0.0.1:9003",
    schemes: STREAMS,
    dispatch: DispatchMode::Threads,
    alpn: &[],
    idle_timeout: None,
    client_timeout: "60",
};

/// File transfer.
pub const FILES: Service = Service {
    name: "files",
    default_url: "tcp://127.0.0.1:9004",
    schemes: STREAMS,
    dispatch: DispatchMode::Threads,
    alpn: &[],
    idle_timeout: None,
    client_timeout: "30",
};

/// The chat room.
pub const CHAT: Service = Service {
    name: "chat",
    default_url: "tcp://127.0.0.1:9005",
    schemes: STREAMS,
    dispatch: DispatchMode::Reactor,
    alpn: &[],
    idle_timeout: None,
    client_timeout: "10",
};

/// The static HTTP server.
pub const HTTP: Service = Service {
    name: "http",
    default_url: "tcp://127.0.0.1:8000",
    schemes: STREAMS,
    dispatch: DispatchMode::Reactor,
    alpn: &[b"http/1.1"],
    idle_timeout: Some(socketserver::services::http::DEFAULT_IDLE_TIMEOUT),
    client_timeout: "10",
};

/// Every service, in the order of the help text.
pub const ALL: [&Service; 7] = [&ECHO_UPPER, &QA, &DICT, &EXEC, &FILES, &CHAT, &HTTP];

/// Gives every `serve SERVICE` and `client SERVICE` its service's defaults
/// (address, dispatch mode, client timeout), so that `--help` shows them.
pub fn with_defaults(mut command: clap::Command) -> clap::Command {
    for service in ALL {
        let dispatch = match service.dispatch {
            DispatchMode::Threads => "threads",
            DispatchMode::Reactor => "reactor",
        };
        command = command
            .mut_subcommand("serve", |serve| {
                serve.mut_subcommand(service.name, |cmd| {
                    let cmd = cmd.mut_arg("dispatch", |arg| arg.default_value(dispatch));
                    let bind_help = format!(
                        "Listen on URL: {} (repeatable) [default: {}]",
                        schemes_help(service.schemes),
                        service.default_url
                    );
                    cmd.mut_arg("urls", |arg| arg.help(bind_help))
                })
            })
            .mut_subcommand("client", |client| {
                client.mut_subcommand(service.name, |cmd| {
                    // Derived as required (they have no default of their
                    // own); clap checks requiredness before defaults.
                    cmd.mut_arg("connect", |arg| {
                        arg.default_value(service.default_url).required(false)
                    })
                    .mut_arg("timeout", |arg| {
                        arg.default_value(service.client_timeout).required(false)
                    })
                })
            });
    }
    command
}

/// The URL forms of `schemes`, for help texts.
fn schemes_help(schemes: &[Scheme]) -> String {
    schemes
        .iter()
        .map(|s| {
            if s.is_inet() {
                format!("{s}://HOST:PORT")
            } else {
                format!("{s}:PATH")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_connects_to_its_service_by_default() {
        use clap::{CommandFactory, FromArgMatches};
        for service in ALL {
            let args: &[&str] = match service.name {
                "exec" => &["--key-file", "k"],
                "files" => &["list"],
                _ => &[],
            };
            let mut argv = vec!["socketserver", "client", service.name];
            argv.extend_from_slice(args);
            let matches = with_defaults(crate::Cli::command())
                .try_get_matches_from(&argv)
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            crate::Cli::from_arg_matches(&matches).expect("parses");
            let client = matches.subcommand_matches("client").unwrap();
            let (_, own) = client.subcommand().unwrap();
            let url: &socketserver::SocketUrl = own.get_one("connect").unwrap();
            assert_eq!(url.to_string(), service.default_url, "{}", service.name);
        }
    }

    #[test]
    fn every_default_url_parses_and_speaks_a_scheme_of_its_service() {
        for service in ALL {
            let url: socketserver::SocketUrl = service.default_url.parse().unwrap();
            assert!(service.schemes.contains(&url.scheme()), "{}", service.name);
            assert!(
                crate::common::parse_duration(service.client_timeout).is_ok(),
                "{}",
                service.name
            );
        }
    }
}
