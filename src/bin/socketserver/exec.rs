//! `serve exec` and `client exec`.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use socketserver::client::exec::ExecClient;
use socketserver::protocol::auth::NoChallenge;
use socketserver::protocol::framing::FrameCodec;
use socketserver::request::Shared;
use socketserver::services::exec::Containment;
use socketserver::services::Exec;

use crate::common::{parse_duration, parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::framed::{frame_size, load_key, session_error, AuthArgs, EndianArg};
use crate::serve::ServerArgs;
use crate::services::EXEC;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The shared key: this file's bytes, all of them (required)
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Allow the program PROG, matched exactly against a command's first word (repeatable)
    #[arg(long = "allow", value_name = "PROG")]
    allow: Vec<String>,
    /// Allow every program
    #[arg(long)]
    allow_any: bool,
    /// Run command lines through /bin/sh -c (the allow-list then checks only the first word)
    #[arg(long)]
    shell: bool,
    /// Run commands in DIR
    #[arg(long, value_name = "DIR", default_value = ".")]
    workdir: PathBuf,
    /// Kill a command, and everything it started, after SECS
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    timeout: Duration,
    /// How a command's processes are found to be killed: a cgroup per command (cgroup), a process group per command plus the server as their subreaper (process-group), or cgroups where the server may make them (auto)
    #[arg(long, value_name = "HOW", default_value = "auto")]
    contain: Containment,
    /// Keep at most SIZE bytes of each of stdout and stderr
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    max_output: u64,
    #[command(flatten)]
    endian: EndianArg,
    /// Largest command frame
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    max_frame: u64,
    #[command(flatten)]
    auth: AuthArgs,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let codec = FrameCodec::new()
        .endian(args.endian.frame_endian)
        .max_frame(frame_size("--max-frame", args.max_frame)?);
    let max_output = usize::try_from(args.max_output)
        .map_err(|_| CliError::Usage(format!("--max-output {} is too large", args.max_output)))?;
    let key = load_key(&args.key_file)?;
    if !args.workdir.is_dir() {
        return Err(CliError::Failed(format!(
            "cannot use --workdir {}: not a directory",
            args.workdir.display()
        )));
    }
    let mut exec = Exec::new()
        .allow_any(args.allow_any)
        .shell(args.shell)
        .workdir(&args.workdir)
        .timeout(args.timeout)
        .max_output(max_output)
        .codec(codec)
        .containment(args.contain)
        // The program has no children of its own but the commands.
        .adopt_orphans(true);
    for program in &args.allow {
        exec = exec.allow(program.as_str());
    }
    let containment = exec
        .prepare()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    log::info!("{containment}");
    if args.shell {
        log::warn!(
            "--shell: command lines run through /bin/sh -c, and the allow-list checks only their first \
             word (an allowed `echo` lets `echo; anything` run)"
        );
    }
    if args.allow_any {
        log::warn!("--allow-any: a client with the key can run any program");
    } else if args.allow.is_empty() {
        log::warn!("no --allow given: every command will be refused");
    }
    let exec = Shared::new(exec.authenticated(args.auth.config(key)));
    let result = args.server.serve(&EXEC, &exec);
    let killed = exec.inner().kill_running();
    if killed > 0 {
        log::warn!("killed {killed} command(s) still running at exit");
    }
    result
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    // Leave --timeout room for the server's own --timeout.
    #[command(flatten)]
    net: ConnectArgs,
    /// The shared key: this file's bytes, all of them (required)
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    #[command(flatten)]
    endian: EndianArg,
    /// The command line to run (words joined with spaces, as ssh does); without it, each line of standard input
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// Runs the command (or each line of standard input) and exits with the
/// last command's status: its exit code, 128 + a signal number, or 1 when
/// the server refused it.
pub fn client(args: ClientArgs) -> ExitCode {
    match run_client(args) {
        Ok(status) => ExitCode::from(status),
        Err(e) => e.report(),
    }
}

fn run_client(args: ClientArgs) -> Result<u8, CliError> {
    let key = load_key(&args.key_file)?;
    let codec = FrameCodec::new().endian(args.endian.frame_endian);
    let net = &args.net;
    let connection = net.open(&EXEC, Some(net.timeout))?;
    let mut client = ExecClient::handshake(connection, &key, codec)
        .map_err(|e| NoChallenge::explain(e, &net.connect, Some(net.timeout), "an exec server"))
        .map_err(|e| session_error(&net.connect, e))?;
    let mut status = 0;
    if !args.command.is_empty() {
        status = run_one(&mut client, &args.command.join(" "))?;
    } else {
        for line in io::stdin().lock().lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            status = run_one(&mut client, &line)?;
        }
    }
    Ok(status)
}

/// Runs one command line, copies its output, and returns its status.
fn run_one(client: &mut ExecClient, line: &str) -> Result<u8, CliError> {
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let answer = client
        .run_to(line, &mut stdout, &mut stderr)
        .map_err(|e| CliError::Failed(format!("lost the connection: {e}")))?;
    stdout.flush()?;
    match answer {
        Ok(status) => {
            if status.timed_out {
                writeln!(stderr, "exec: the command timed out and was killed")?;
            }
            if status.truncated {
                writeln!(
                    stderr,
                    "exec: output over the server's --max-output was cut"
                )?;
            }
            Ok(u8::try_from(status.shell_status() & 0xff).unwrap_or(1))
        }
        Err(why) => {
            writeln!(stderr, "error: {why}")?;
            Ok(1)
        }
    }
}
