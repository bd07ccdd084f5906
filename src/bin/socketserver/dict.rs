//! `serve dict` and `client dict`.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use socketserver::client::dict::DictClient;
use socketserver::services::Dictionary;

use crate::common::{answer_error, for_each_message, parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::serve::ServerArgs;
use crate::services::DICT;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A word file, one `word<TAB>definition` per line; replaces the built-in dictionary
    #[arg(long, value_name = "FILE")]
    words: Option<PathBuf>,
    /// The longest request (datagram or line), in bytes
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "8KiB")]
    max_line: u64,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let dict = match &args.words {
        Some(path) => Dictionary::load(path).map_err(|e| {
            CliError::Failed(format!("cannot load --words {}: {e}", path.display()))
        })?,
        None => Dictionary::builtin(),
    };
    let dict = dict.max_line(usize::try_from(args.max_line).unwrap_or(usize::MAX));
    args.server.serve_any(&DICT, &dict)
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    net: ConnectArgs,
    /// Words to look up; standard input, one per line, when none
    args: Vec<String>,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let net = &args.net;
    net.check()?;
    let mut dict = if net.connect.is_stream() {
        DictClient::on(net.open(&DICT, Some(net.timeout))?)?
    } else {
        DictClient::connect(&net.connect, net.timeout)
            .map_err(|e| CliError::Failed(format!("cannot reach {}: {e}", net.connect)))?
    };
    let mut stdout = io::stdout().lock();
    let lookup = |word: &str| -> Result<(), CliError> {
        let answer = dict
            .lookup(word)
            .map_err(|e| answer_error(&net.connect, net.timeout, "a dict server", e))?;
        writeln!(stdout, "{answer}")?;
        Ok(stdout.flush()?)
    };
    for_each_message(&args.args, lookup)
}
