//! `serve qa` and `client qa`.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use socketserver::client::qa::QaClient;
use socketserver::services::QaBot;

use crate::common::{answer_error, for_each_message, parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::serve::ServerArgs;
use crate::services::QA;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A JSON object of keyword to answer, tried in order; replaces the built-in table
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// The longest question, in bytes; a longer one is answered with an error and the connection closed
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "8KiB")]
    max_line: u64,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let bot = match &args.answers {
        Some(path) => QaBot::load(path).map_err(|e| {
            CliError::Failed(format!("cannot load --answers {}: {e}", path.display()))
        })?,
        None => QaBot::new(),
    };
    let bot = bot.max_line(usize::try_from(args.max_line).unwrap_or(usize::MAX));
    args.server.serve(&QA, &bot)
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    net: ConnectArgs,
    /// Questions to ask; standard input, one per line, when none
    args: Vec<String>,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let net = &args.net;
    let mut bot = QaClient::on(net.open(&QA, Some(net.timeout))?)?;
    let mut stdout = io::stdout().lock();
    let ask = |question: &str| -> Result<(), CliError> {
        let answer = bot
            .ask(question)
            .map_err(|e| answer_error(&net.connect, net.timeout, "a qa server", e))?;
        writeln!(stdout, "{answer}")?;
        Ok(stdout.flush()?)
    };
    for_each_message(&args.args, ask)
}
