//! Descriptor exhaustion: when accept fails with EMFILE the server neither
//! crashes nor spins a core, and serves again once descriptors free up.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::{ServerProcess, STEP};

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_backs_off_and_recovers() {
    let program = env!("CARGO_BIN_EXE_socketserver");
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            // A connection cap beyond the limit (the default would be
            // fitted under it): accept itself runs out of descriptors.
            "ulimit -n 32 && exec {program} serve echo-upper --bind tcp://127.0.0.1:0 --threads 2 \
             --max-connections 1000"
        ),
    ]);
    let mut server = ServerProcess::start_with(&mut command, 1);
    let addr = server.addr();
    // More connections than the server has descriptors for; the kernel's
    // backlog holds the ones it cannot accept.
    let held: Vec<TcpStream> = (0..48)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut last = held.last().unwrap().try_clone().unwrap();
    last.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    last.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    assert!(
        last.read(&mut one).is_err(),
        "the last connection cannot be served yet"
    );
    // While it is stuck, it must not spin: sample its CPU time over a second.
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 30,
        "the server burned {used} ticks of CPU in one second while out of descriptors"
    );
    // Free the descriptors: everything waiting is served, the last one too.
    drop(held);
    last.set_read_timeout(Some(STEP)).unwrap();
    last.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"X");
    let mut fresh = TcpStream::connect(&addr).unwrap();
    fresh.set_read_timeout(Some(STEP)).unwrap();
    fresh.write_all(b"again").unwrap();
    let mut buf = [0u8; 5];
    fresh.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"AGAIN");
    drop((last, fresh));
    server.signal("TERM");
    assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
    let log = server.stderr_text();
    assert!(log.contains("Too many open files"), "{log}");
    assert_eq!(
        log.matches("cannot accept").count(),
        1,
        "the failure is logged once: {log}"
    );
}
