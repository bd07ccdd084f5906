//! The open-file limit (SPEC rule 23, 43): the program raises its soft limit
//! to the hard one, fits its default connection cap under it silently, and
//! warns when an operator asks for more than it allows.

mod support;

use support::ServerProcess;

/// The hard limit of open files, which the program raises its soft limit to.
fn hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit.rlim_max
}

fn stderr_after_stop(mut server: ServerProcess) -> String {
    server.signal("TERM");
    server.wait(support::STEP).expect("the server exits");
    server.stderr_text()
}

#[test]
fn a_cap_beyond_the_limit_is_kept_with_a_warning_and_defaults_fit_silently() {
    let hard = hard_limit();
    if hard == libc::RLIM_INFINITY || hard > 1_000_000 {
        eprintln!("SKIPPED: the open-file limit ({hard}) is above every default here");
        return;
    }
    let over = (hard * 2).to_string();
    let server = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
            "--dispatch",
            "reactor",
            "--bind",
            "tcp://127.0.0.1:0",
            "--max-connections",
            &over,
        ],
        1,
    );
    let stderr = stderr_after_stop(server);
    assert!(
        stderr.contains(&format!(
            "--max-connections {over} is more than the open-file limit {hard} allows"
        )),
        "{stderr}"
    );
    // The reactor's default cap (100,000) is above this machine's limit: it
    // is lowered without a word.
    let server = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
            "--dispatch",
            "reactor",
            "--bind",
            "tcp://127.0.0.1:0",
        ],
        1,
    );
    let stderr = stderr_after_stop(server);
    assert!(!stderr.contains("open-file limit"), "{stderr}");
}
