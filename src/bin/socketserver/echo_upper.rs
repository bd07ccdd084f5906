//! `serve echo-upper` and `client echo-upper`.

use std::io::{self, Write};

use clap::Args;
use socketserver::client::{pipe, DatagramClient};
use socketserver::services::EchoUpper;

use crate::common::{answer_error, for_each_message, CliError};
use crate::connect::ConnectArgs;
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
    #[command(flatten)]
    net: ConnectArgs,
    /// Messages to send, one line (or one datagram) each; standard input when none
    args: Vec<String>,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let net = &args.net;
    net.check()?;
    let mut stdout = io::stdout().lock();
    if net.connect.is_stream() {
        let connection = net.open(&ECHO_UPPER, Some(net.timeout))?;
        let piped = if args.args.is_empty() {
            pipe(connection, io::stdin(), &mut stdout)
        } else {
            let lines: String = args.args.iter().map(|a| format!("{a}\n")).collect();
            pipe(connection, lines.as_bytes(), &mut stdout)
        };
        return piped
            .map_err(|e| answer_error(&net.connect, net.timeout, "an echo-upper server", e));
    }
    let client = DatagramClient::connect(&net.connect, net.timeout)
        .map_err(|e| CliError::Failed(format!("cannot reach {}: {e}", net.connect)))?;
    let mut buf = vec![0u8; 65_536];
    let ask = |message: &str| -> Result<(), CliError> {
        client
            .send(message.as_bytes())
            .map_err(|e| CliError::Failed(format!("cannot send to {}: {e}", net.connect)))?;
        let n = client
            .recv(&mut buf)
            .map_err(|e| answer_error(&net.connect, net.timeout, "an echo-upper server", e))?;
        stdout.write_all(&buf[..n])?;
        stdout.write_all(b"\n")?;
        Ok(stdout.flush()?)
    };
    for_each_message(&args.args, ask)
}
