//! What packagers and confused users get: shell completions, manual pages,
//! and usage errors that point the right way.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Args;

use crate::common::CliError;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Prints the completion script of `args.shell` for `command`.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<(), CliError> {
    // Into memory first: the generator panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "socketserver", &mut script);
    let mut out = io::stdout().lock();
    out.write_all(&script)?;
    Ok(out.flush()?)
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write socketserver.1 and a page per subcommand (socketserver-serve-qa.1, ...) into DIR instead
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the program's manual page, or writes every command's into a
/// directory.
pub fn man(args: ManArgs, command: clap::Command) -> Result<(), CliError> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(command, &dir).map_err(|e| {
                CliError::Failed(format!(
                    "cannot write the pages into {}: {e}",
                    dir.display()
                ))
            })?;
            Ok(())
        }
        None => {
            let mut out = io::stdout().lock();
            clap_mangen::Man::new(command).render(&mut out)?;
            Ok(out.flush()?)
        }
    }
}

/// Reports an error from parsing the arguments and gives the exit status:
/// clap's own report, except for a flag used on the wrong side (`client
/// ... --bind`, `serve ... --connect`), which says which flag is meant.
pub fn usage_error(error: clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(hint) = misplaced_flag(&error, &args) {
        eprintln!("error: {hint}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
    }
    error.exit()
}

/// The hint for `--bind` given to a client or `--connect` to a server.
fn misplaced_flag(error: &clap::Error, args: &[String]) -> Option<String> {
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = flag.split('=').next().unwrap_or(flag);
    let side = args
        .iter()
        .skip(1)
        .find(|a| *a == "client" || *a == "serve" || *a == "bench")?;
    match (side.as_str(), flag) {
        ("client" | "bench", "--bind") => Some(format!(
            "a {side} connects to a server: use --connect URL (--bind is for serve)"
        )),
        ("serve", "--connect") => {
            Some("a server listens: use --bind URL (--connect is for client and bench)".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn hint(args: &[&str]) -> Option<String> {
        let command = crate::services::with_defaults(crate::Cli::command());
        let error = match command.try_get_matches_from(args) {
            Ok(matches) => {
                crate::Cli::from_arg_matches(&matches).expect("parses");
                return None;
            }
            Err(e) => e,
        };
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        misplaced_flag(&error, &args)
    }

    #[test]
    fn bind_and_connect_on_the_wrong_side_are_pointed_the_right_way() {
        let client = hint(&[
            "socketserver",
            "client",
            "echo-upper",
            "--bind",
            "tcp://127.0.0.1:1",
        ]);
        assert!(client.unwrap().contains("use --connect URL"));
        let inline = hint(&["socketserver", "client", "qa", "--bind=tcp://127.0.0.1:1"]);
        assert!(inline.unwrap().contains("use --connect URL"));
        let serve = hint(&[
            "socketserver",
            "serve",
            "qa",
            "--connect",
            "tcp://127.0.0.1:1",
        ]);
        assert!(serve.unwrap().contains("use --bind URL"));
        assert_eq!(
            hint(&["socketserver", "client", "qa", "--frobnicate"]),
            None
        );
        assert_eq!(hint(&["socketserver", "client", "qa", "hello"]), None);
    }
}
