//! `serve files` and `client files`.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use socketserver::client::files::FilesClient;
use socketserver::protocol::auth::NoChallenge;
use socketserver::protocol::framing::FrameCodec;
use socketserver::request::Shared;
use socketserver::services::Files;

use crate::common::{parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::framed::{frame_size, load_key, progress_bar, session_error, AuthArgs, EndianArg};
use crate::serve::ServerArgs;
use crate::services::FILES;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Store and serve the files of DIR (created if missing)
    #[arg(long, value_name = "DIR", default_value = "received")]
    dir: PathBuf,
    /// Refuse uploads over SIZE
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1GiB")]
    max_size: u64,
    /// Require the HMAC handshake with the key in FILE (its bytes, all of them)
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    endian: EndianArg,
    /// Largest JSON header
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64KiB")]
    max_header: u64,
    // The handshake's options apply with --key-file.
    #[command(flatten)]
    auth: AuthArgs,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let codec = FrameCodec::new()
        .endian(args.endian.frame_endian)
        .max_header(frame_size("--max-header", args.max_header)?);
    let key = args.key_file.as_deref().map(load_key).transpose()?;
    let files = Files::new(&args.dir).max_size(args.max_size).codec(codec);
    files
        .prepare()
        .map_err(|e| CliError::Failed(format!("cannot use --dir {}: {e}", args.dir.display())))?;
    match key {
        Some(key) => args.server.serve(
            &FILES,
            &Shared::new(files.authenticated(args.auth.config(key))),
        ),
        None => args.server.serve(&FILES, &Shared::new(files)),
    }
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    net: ConnectArgs,
    /// Authenticate with the key in FILE (when the server has --key-file)
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    endian: EndianArg,
    #[command(subcommand)]
    op: Op,
}

#[derive(Subcommand, Debug)]
enum Op {
    /// Upload files (their digest is sent and checked by the server)
    Put {
        /// Store the file under NAME instead of its own name (one file only)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The files to upload
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Download a file (its digest is checked)
    Get {
        /// Write to PATH instead of ./NAME ("-": standard output); an existing PATH is replaced
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace ./NAME if it exists (without -o, an existing file is refused)
        #[arg(long)]
        force: bool,
        /// The file's name on the server
        name: String,
    },
    /// List the server's files: NAME<TAB>SIZE per line
    List,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let key = args.key_file.as_deref().map(load_key).transpose()?;
    if let Op::Get {
        output: None,
        force: false,
        name,
    } = &args.op
    {
        // Checked before connecting: nothing to undo.
        let path = PathBuf::from(name);
        if path.symlink_metadata().is_ok() {
            return Err(CliError::Failed(format!(
                "{} exists: use --force to replace it, or -o PATH to save elsewhere",
                path.display()
            )));
        }
    }
    let codec = FrameCodec::new().endian(args.endian.frame_endian);
    let net = &args.net;
    let connection = net.open(&FILES, Some(net.timeout))?;
    let mut client = FilesClient::on(connection, key.as_ref(), codec)
        .map_err(|e| {
            NoChallenge::explain(
                e,
                &net.connect,
                Some(net.timeout),
                "a files server with a key",
            )
        })
        .map_err(|e| session_error(&net.connect, e))?;
    let mut stdout = io::stdout().lock();
    match args.op {
        Op::Put { name, files } => {
            if name.is_some() && files.len() > 1 {
                return Err(CliError::Usage("--name needs exactly one FILE".to_string()));
            }
            for path in &files {
                let size = std::fs::metadata(path)
                    .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))?
                    .len();
                // Made at the first bytes sent, after the file was hashed,
                // so that its rate is the transfer's.
                let mut bar = None;
                let stored = client
                    .put_file(path, name.as_deref(), &mut |sent| {
                        let bar = bar
                            .get_or_insert_with(|| progress_bar(size, path.display().to_string()));
                        if let Some(bar) = bar {
                            bar.set_position(sent)
                        }
                    })
                    .map_err(|e| {
                        CliError::Failed(format!("cannot upload {}: {e}", path.display()))
                    });
                if let Some(Some(bar)) = bar {
                    bar.finish_and_clear();
                }
                let stored = stored?;
                writeln!(
                    stdout,
                    "stored {} ({} bytes, sha256 {})",
                    stored.file_name, stored.size, stored.sha256
                )?;
            }
        }
        Op::Get { output, name, .. } => {
            let mut bar = None;
            let mut progress = |received: u64, total: u64| {
                let bar = bar.get_or_insert_with(|| progress_bar(total, name.clone()));
                if let Some(bar) = bar {
                    bar.set_position(received);
                }
            };
            let to_stdout = output.as_deref() == Some("-".as_ref());
            let fetched = if to_stdout {
                client.get(&name, &mut stdout, &mut progress)
            } else {
                let path = output.clone().unwrap_or_else(|| PathBuf::from(&name));
                client.get_to_file(&name, &path, &mut progress)
            };
            if let Some(Some(bar)) = bar {
                bar.finish_and_clear();
            }
            let fetched =
                fetched.map_err(|e| CliError::Failed(format!("cannot download {name}: {e}")))?;
            if !to_stdout {
                let path = output.unwrap_or_else(|| PathBuf::from(&name));
                writeln!(
                    stdout,
                    "saved {} to {} ({} bytes, sha256 {})",
                    fetched.file_name,
                    path.display(),
                    fetched.size,
                    fetched.sha256
                )?;
            }
        }
        Op::List => {
            let entries = client
                .list()
                .map_err(|e| CliError::Failed(format!("cannot list: {e}")))?;
            for entry in entries {
                writeln!(stdout, "{}\t{}", entry.name, entry.size)?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}
