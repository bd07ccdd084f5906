//! The program: `serve echo-upper` and `client echo-upper`, exit codes and
//! signals.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{program, run_with_input, ServerProcess, TempDir, STEP};

#[test]
fn usage_errors_exit_2_and_bind_errors_exit_1() {
    for args in [
        vec!["serve", "echo-upper", "--bind", "http://127.0.0.1:80"],
        vec!["serve", "echo-upper", "--bind", "tcp://127.0.0.1:99999"],
        vec!["serve", "echo-upper", "--threads", "many"],
        vec!["serve", "no-such-service"],
        vec!["frobnicate"],
    ] {
        let (status, _, err) = run_with_input(program().args(&args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    let (status, _, err) = run_with_input(
        program()
            .args(["serve", "echo-upper", "--bind", &url])
            .env("RUST_LOG", "off"),
        b"",
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.starts_with(&format!("error: cannot bind {url}: ")),
        "{err}"
    );
}
