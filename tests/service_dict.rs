//! dict (SPEC section 4, rule 14) through the program: UDP datagrams and
//! TCP lines, word files and their errors, bad input, every transport, the
//! client command and the course's Python UDP client.
//!
//! Tests over stream transports run in both dispatch modes. Tests over
//! datagrams only run once: `--dispatch` is accepted there and changes
//! nothing (SPEC rule 21).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};

use support::{program, run_with_input, serve, ServerProcess, TempDir, STEP};

/// A UDP socket talking to the server.
fn udp(server_addr: &str) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    socket.connect(server_addr).unwrap();
    socket
}

fn ask_udp(socket: &UdpSocket, query: &[u8]) -> String {
    socket.send(query).unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn start_udp(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["serve", "dict", "--bind", "udp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, 1)
}

#[test]
fn udp_lookups_are_trimmed_and_case_insensitive_and_keep_the_query() {
    let server = start_udp(&[]);
    assert!(server.url().starts_with("udp://"));
    let socket = udp(&server.addr());
    for word in [
        "hello", "world", "socket", "server", "client", "thread", "protocol", "packet",
    ] {
        let answer = ask_udp(&socket, word.as_bytes());
        let definition = answer
            .strip_prefix(&format!("{word}: "))
            .unwrap_or_else(|| panic!("{answer:?}"));
        assert!(
            !definition.is_empty() && definition != "not found",
            "{word}: {answer:?}"
        );
        assert!(!answer.ends_with('\n'), "a UDP answer has no newline");
        // Any case, surrounding white space: the same definition, the query's case.
        let shouted = ask_udp(
            &socket,
            format!(" \t{}\r\n", word.to_uppercase()).as_bytes(),
        );
        assert_eq!(shouted, format!("{}: {definition}", word.to_uppercase()));
    }
    assert_eq!(ask_udp(&socket, b"xyzzy"), "xyzzy: not found");
    assert_eq!(ask_udp(&socket, b"  Xyzzy  "), "Xyzzy: not found");
    assert_eq!(ask_udp(&socket, b""), ": not found");
    // Not UTF-8: replaced, still answered.
    assert_eq!(ask_udp(&socket, b"ab\xffc"), "ab\u{fffd}c: not found");
    // Over the limit: an error, and the server goes on.
    assert_eq!(ask_udp(&socket, &[b'w'; 9000]), "error: line too long");
    assert!(ask_udp(&udp(&server.addr()), b"Packet").starts_with("Packet: "));
}

#[test]
fn word_files_replace_the_builtin_dictionary() {
    let dir = TempDir::new("dict-words");
    let file = dir.write(
        "words.txt",
        "# my words\n\n  Rust \t a language \nferris\tthe crab\n   # indented comment\nRUST\ta fungus, too\n",
    );
    let server = start_udp(&["--words", file.to_str().unwrap()]);
    let socket = udp(&server.addr());
    assert_eq!(
        ask_udp(&socket, b"rust"),
        "rust: a fungus, too",
        "a later duplicate wins"
    );
    assert_eq!(ask_udp(&socket, b"Ferris"), "Ferris: the crab");
    assert_eq!(
        ask_udp(&socket, b"hello"),
        "hello: not found",
        "the built-in words are gone"
    );
    assert_eq!(ask_udp(&socket, b"# my words"), "# my words: not found");
}

#[test]
fn word_file_errors_exit_1_naming_the_line() {
    let dir = TempDir::new("dict-bad-words");
    let bad = dir.write("bad.txt", "a\tfirst\n# comment\n\nno tab on this line\n");
    let missing = dir.join("missing.txt");
    for (path, reason) in [(&bad, "line 4: "), (&missing, "No such file")] {
        let path = path.to_str().unwrap();
        let (status, out, err) = run_with_input(
            program().args([
                "serve",
                "dict",
                "--bind",
                "udp://127.0.0.1:0",
                "--words",
                path,
            ]),
            b"",
        );
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(out.is_empty());
        let prefix = format!("error: cannot load --words {path}: ");
        assert!(err.starts_with(&prefix) && err.contains(reason), "{err}");
    }
}

#[test]
fn the_course_python_udp_client_works_unchanged() {
    let Some(mut client) = support::course_client("dict_client.py") else {
        return;
    };
    let server = start_udp(&[]);
    let (host, port) = server.host_port();
    let (status, out, err) = run_with_input(
        client.args([host.as_str(), port.as_str(), "hello", "Packet", "unknown"]),
        b"",
    );
    assert!(status.success(), "python client failed: {err}");
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("hello: a greeting"), "{out}");
    assert!(lines[1].starts_with("Packet: "), "{out}");
    assert_eq!(lines[2], "unknown: not found");
}

crate::both_modes! {
    fn tcp_lines_get_one_line_each(mode) {
        let server = serve("dict", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let stream = support::connect(server.addr());
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        // Pipelined, with \r\n and surrounding blanks.
        writer
            .write_all(b"Thread\r\n  PROTOCOL  \nnothing\n\xff\n")
            .unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("Thread: a path of execution") && line.ends_with("\n"),
            "{line:?}"
        );
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("PROTOCOL: ") && line.ends_with('\n'),
            "{line:?}"
        );
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "nothing: not found\n");
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "\u{fffd}: not found\n");

        // An over-long line: the error, then the connection closes.
        writer.write_all(&[b'x'; 8193]).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "error: line too long\n");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        // A new client is served.
        let (status, out, err) = run_with_input(
            program().args(["client", "dict", "--connect", server.url(), "socket"]),
            b"",
        );
        assert!(status.success(), "{err}");
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("socket: an endpoint"));
    }

    fn every_transport_at_once(mode) {
        let dir = TempDir::new("dict-transports");
        let stream_path = dir.join("dict.sock");
        let gram_path = dir.join("dictg.sock");
        let unix = format!("unix:{}", stream_path.display());
        let unixgram = format!("unixgram:{}", gram_path.display());
        let server = serve(
            "dict",
            mode,
            &[
                "--bind",
                "udp://127.0.0.1:0",
                "--bind",
                "tcp://127.0.0.1:0",
                "--bind",
                &unix,
                "--bind",
                &unixgram,
            ],
            4,
        );
        let mut stream = UnixStream::connect(&stream_path).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.write_all(b"client\n").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("client: ") && answer.ends_with('\n'),
            "{answer:?}"
        );

        let own = dir.join("me.sock");
        let gram = UnixDatagram::bind(&own).unwrap();
        gram.set_read_timeout(Some(STEP)).unwrap();
        gram.send_to(b"SERVER", &gram_path).unwrap();
        let mut buf = [0u8; 1024];
        let n = gram.recv(&mut buf).unwrap();
        let answer = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            answer.starts_with("SERVER: a program") && !answer.ends_with('\n'),
            "{answer:?}"
        );

        // The client command over each URL.
        for url in &server.urls {
            let (status, out, err) = run_with_input(
                program().args(["client", "dict", "--connect", url]),
                b"World\n",
            );
            assert!(status.success(), "{url}: {err}");
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.starts_with("World: ") && out.ends_with('\n') && out.lines().count() == 1,
                "{url}: {out:?}"
            );
        }
    }
}
