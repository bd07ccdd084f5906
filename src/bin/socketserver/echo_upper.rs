//! `serve echo-upper` and `client echo-upper`.

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use socketserver::client::{pipe, Connection, DatagramClient};
use socketserver::services::EchoUpper;
use socketserver::SocketUrl;

use crate::common::{answer_error, for_each_message, parse_duration, CliError};
use crate::serve::ServerArgs;
use crate::services::ECHO_UPPER;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    args.server.serve_any(&ECHO_UPPER, &EchoUpper)
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The server's URL
    #[arg(long, value_name = "URL")]
    connect: SocketUrl,
    /// Give up waiting for an answer after SECS
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    timeout: Duration,
    /// Messages to send, one line (or one datagram) each; standard input when none
    args: Vec<String>,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    if args.connect.is_stream() {
        let connection = Connection::connect(&args.connect, Some(args.timeout))
            .map_err(|e| CliError::Failed(format!("cannot connect to {}: {e}", args.connect)))?;
        connection.set_read_timeout(Some(args.timeout))?;
        let piped = if args.args.is_empty() {
            pipe(connection, io::stdin(), &mut stdout)
        } else {
            let lines: String = args.args.iter().map(|a| format!("{a}\n")).collect();
            pipe(connection, lines.as_bytes(), &mut stdout)
        };
        return piped
            .map_err(|e| answer_error(&args.connect, args.timeout, "an echo-upper server", e));
    }
    let client = DatagramClient::connect(&args.connect, args.timeout)
        .map_err(|e| CliError::Failed(format!("cannot reach {}: {e}", args.connect)))?;
    let mut buf = vec![0u8; 65_536];
    let ask = |message: &str| -> Result<(), CliError> {
        client
            .send(message.as_bytes())
            .map_err(|e| CliError::Failed(format!("cannot send to {}: {e}", args.connect)))?;
        let n = client
            .recv(&mut buf)
            .map_err(|e| answer_error(&args.connect, args.timeout, "an echo-upper server", e))?;
        let answer = &buf[..n];
        stdout.write_all(answer)?;
        stdout.write_all(b"\n")?;
        Ok(stdout.flush()?)
    };
    for_each_message(&args.args, ask)
}
