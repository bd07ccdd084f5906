//! The `socketserver` program: `serve` and `client` for each built-in service.
//! It parses arguments and wires library types; everything else lives in the
//! library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod chat;
mod common;
mod dict;
mod echo_upper;
mod exec;
mod files;
mod framed;
mod http;
mod loadgen;
mod qa;

/// Python's socketserver model in Rust: the socket-programming course's
/// services, served on a thread pool, and their clients.
#[derive(Parser)]
#[command(name = "socketserver", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
