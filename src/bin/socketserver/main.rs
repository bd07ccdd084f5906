//! The `socketserver` program: `serve` and `client` for each built-in service.
//! It parses arguments and wires library types; everything else lives in the
//! library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod bench;
mod chat;
mod common;
mod connect;
mod dict;
mod echo_upper;
mod exec;
mod files;
mod framed;
mod http;
mod loadgen;
mod logging;
mod manual;
mod qa;
mod serve;
mod services;
mod terminal;

/// Python's socketserver model in Rust: the services of the classic
/// socket-programming course, served on a thread pool, and their clients.
#[derive(Parser)]
#[command(name = "socketserver", version)]
struct Cli {
    /// Log more: -v adds info (the shutdown summary), -vv debug, -vvv trace; RUST_LOG, when set, wins
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log less: -q errors only, -qq nothing; RUST_LOG, when set, wins
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    quiet: u8,
    /// Log lines on standard error as text, or as one JSON object per line (time, level, target, message) for log shippers
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a service's server until Ctrl-C, SIGTERM or SIGHUP (each drains, then exits 0).
    #[command(subcommand)]
    Serve(Serve),
    /// Talk to a service (reads standard input when no ARGS are given).
    #[command(subcommand)]
    Client(Client),
    /// Load a server with many clients and measure it (every answer is checked).
    Bench(bench::BenchArgs),
    /// Print a shell's completion script (e.g. `socketserver completions bash > /usr/share/bash-completion/completions/socketserver`).
    Completions(manual::CompletionsArgs),
    /// Print the manual page (roff), or with --dir write one page per command into DIR.
    Man(manual::ManArgs),
}

#[derive(Subcommand)]
enum Serve {
    /// Sends every byte back uppercased (tcp, udp, unix, unixgram).
    EchoUpper(echo_upper::ServeArgs),
    /// Runs allowed commands for clients that know the key (tcp, unix).
    Exec(exec::ServeArgs),
    /// Stores, serves and lists the files of a directory (tcp, unix).
    Files(files::ServeArgs),
    /// The Q&A bot: one answer line per question line (tcp, unix).
    Qa(qa::ServeArgs),
    /// Word lookup: `WORD: DEFINITION` (udp, tcp, unix, unixgram).
    Dict(dict::ServeArgs),
    /// A chat room: each line goes to every other member (tcp, unix).
    Chat(chat::ServeArgs),
    /// Static HTTP/1.1 files under --root, or a built-in page (tcp, unix).
    Http(http::ServeArgs),
}

#[derive(Subcommand)]
enum Client {
    /// Sends ARGS (or standard input) and prints the uppercased answer.
    EchoUpper(echo_upper::ClientArgs),
    /// Runs COMMAND (or each line of standard input) on the server; exits with the last command's status.
    Exec(exec::ClientArgs),
    /// Uploads, downloads or lists files.
    Files(files::ClientArgs),
    /// Asks ARGS (or each line of standard input) and prints the answers.
    Qa(qa::ClientArgs),
    /// Looks up ARGS (or each line of standard input) and prints the definitions.
    Dict(dict::ClientArgs),
    /// Joins the room: sends standard input's lines, prints the room's.
    Chat(chat::ClientArgs),
    /// Gets PATH and prints the body (the status goes to standard error).
    Http(http::ClientArgs),
}

fn main() -> ExitCode {
    // Before any thread starts: socket activation's and sd_notify's
    // variables leave the environment here (see serve::take_environment).
    serve::take_environment();
    let command = services::with_defaults(Cli::command());
    let matches = match command.clone().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return manual::usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    if let Err(e) = common::raise_open_file_limit() {
        log::warn!("cannot raise the open-file limit: {e}");
    }
    let result = match cli.command {
        Command::Serve(Serve::EchoUpper(args)) => echo_upper::serve(args),
        Command::Client(Client::EchoUpper(args)) => echo_upper::client(args),
        Command::Serve(Serve::Exec(args)) => exec::serve(args),
        Command::Client(Client::Exec(args)) => return exec::client(args),
        Command::Serve(Serve::Files(args)) => files::serve(args),
        Command::Client(Client::Files(args)) => files::client(args),
        Command::Serve(Serve::Qa(args)) => qa::serve(args),
        Command::Client(Client::Qa(args)) => qa::client(args),
        Command::Serve(Serve::Dict(args)) => dict::serve(args),
        Command::Client(Client::Dict(args)) => dict::client(args),
        Command::Serve(Serve::Chat(args)) => chat::serve(args),
        Command::Client(Client::Chat(args)) => chat::client(args),
        Command::Serve(Serve::Http(args)) => http::serve(args),
        Command::Client(Client::Http(args)) => http::client(args),
        Command::Bench(args) => bench::bench(args),
        Command::Completions(args) => manual::completions(args, command),
        Command::Man(args) => manual::man(args, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// Parses a command line as `main` does.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let command = services::with_defaults(Cli::command());
        Cli::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    #[test]
    fn a_client_without_connect_or_timeout_takes_its_services_defaults() {
        assert!(parse(&["socketserver", "client", "qa", "hello"]).is_ok());
        assert!(parse(&["socketserver", "client", "dict", "hello"]).is_ok());
        assert!(parse(&["socketserver", "client", "chat"]).is_ok());
        assert!(parse(&["socketserver", "client", "http", "/"]).is_ok());
        assert!(parse(&["socketserver", "client", "exec", "--key-file", "k", "ls"]).is_ok());
        assert!(parse(&["socketserver", "client", "files", "list"]).is_ok());
        assert!(parse(&["socketserver", "client", "echo-upper", "hi"]).is_ok());
    }

    #[test]
    fn tls_ca_and_tls_server_name_need_tls() {
        for flag in ["--tls-ca=ca.pem", "--tls-server-name=example.com"] {
            let e = parse(&["socketserver", "client", "qa", flag, "hi"])
                .err()
                .expect("refused");
            assert_eq!(e.exit_code(), 2);
        }
        assert!(parse(&[
            "socketserver",
            "client",
            "qa",
            "--tls",
            "--tls-ca=ca.pem",
            "hi"
        ])
        .is_ok());
    }
}
