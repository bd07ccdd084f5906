//! qa (SPEC section 4, rule 13) through the program, in both dispatch
//! modes: the table, pipelining, bad and hostile input (lines at and over
//! the limit, invalid UTF-8, lines cut by a reset), answer files and their
//! errors, Unix sockets, the client command and the course's Python client.
//! After each bad input the same server still answers a new client.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

use support::{program, run_with_input, serve, Mode, ServerProcess, TempDir, STEP};

const DEFAULT: &str = "人家还小，不知道。";

fn start(mode: Mode, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--bind", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    serve("qa", mode, &args, 1)
}

struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(server: &ServerProcess) -> Client {
        let stream = support::connect(server.addr());
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(
            line.ends_with('\n'),
            "an answer ends in a newline: {line:?}"
        );
        line.pop();
        line
    }

    fn ask(&mut self, question: &str) -> String {
        self.send(format!("{question}\n").as_bytes());
        self.line()
    }

    /// Everything until the server closes.
    fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).unwrap();
        rest
    }
}

/// A fresh client still gets the right answers.
fn still_serves(server: &ServerProcess) {
    let mut client = Client::connect(server);
    assert_eq!(client.ask("你好"), "你好啊");
}

crate::both_modes! {
    fn builtin_table_in_order_and_default_answer(mode) {
        let server = start(mode, &[]);
        let mut client = Client::connect(&server);
        assert_eq!(client.ask("你好"), "你好啊");
        assert_eq!(client.ask("你叫什么名字？"), "我叫小美");
        assert_eq!(client.ask("你几岁了"), "我两岁啦");
        assert_eq!(client.ask("你是男生女生"), "我是机器人");
        assert_eq!(client.ask("你睡了吗"), "吸引才是最重要的");
        assert_eq!(client.ask("what is this?"), DEFAULT);
        assert_eq!(
            client.ask(""),
            DEFAULT,
            "an empty line gets the default answer"
        );
        // The first keyword in table order wins, wherever it is in the question.
        assert_eq!(client.ask("睡了吗？你几岁？你好"), "你好啊");
        // \r\n is accepted and not part of the question.
        client.send("叫什么\r\n\r\n".as_bytes());
        assert_eq!(client.line(), "我叫小美");
        assert_eq!(client.line(), DEFAULT);
    }

    fn pipelined_questions_are_answered_in_order(mode) {
        let server = start(mode, &[]);
        let mut client = Client::connect(&server);
        let questions = ["你好", "x", "几岁", "", "叫什么", "睡了"];
        let expected = [
            "你好啊",
            DEFAULT,
            "我两岁啦",
            DEFAULT,
            "我叫小美",
            "吸引才是最重要的",
        ];
        let mut batch = String::new();
        for _ in 0..200 {
            for q in questions {
                batch.push_str(q);
                batch.push('\n');
            }
        }
        // One write with 1200 questions, then read all the answers.
        client.send(batch.as_bytes());
        for round in 0..200 {
            for want in expected {
                assert_eq!(client.line(), want, "round {round}");
            }
        }
        // A last question without a newline, then end of input: answered too.
        client.send("你好".as_bytes());
        client.writer.shutdown(Shutdown::Write).unwrap();
        assert_eq!(client.line(), "你好啊");
        assert!(client.rest().is_empty());
    }

    fn invalid_utf8_is_answered_and_the_conversation_goes_on(mode) {
        let server = start(mode, &[]);
        let mut client = Client::connect(&server);
        client.send(b"\xff\xfe\n");
        assert_eq!(client.line(), "error: invalid UTF-8");
        client.send(b"\xe4\xbd\n"); // a truncated character
        assert_eq!(client.line(), "error: invalid UTF-8");
        assert_eq!(client.ask("你好"), "你好啊");
        still_serves(&server);
    }

    fn an_over_long_line_is_refused_at_once_and_the_connection_closed(mode) {
        let server = start(mode, &[]);
        // Exactly the limit passes, with either terminator.
        let mut client = Client::connect(&server);
        let mut exact = vec![b'a'; 8192];
        exact.push(b'\n');
        client.send(&exact);
        assert_eq!(client.line(), DEFAULT);
        exact.pop();
        exact.extend_from_slice(b"\r\n");
        client.send(&exact);
        assert_eq!(client.line(), DEFAULT);

        // One byte over, with no newline: the error comes without waiting for one.
        let mut client = Client::connect(&server);
        client.send(&[b'a'; 8193]);
        assert_eq!(client.line(), "error: line too long");
        assert!(
            client.rest().is_empty(),
            "the server closes after the error"
        );

        // Answers to the questions before the long line still come first; the
        // data after it is never answered.
        let mut client = Client::connect(&server);
        let mut input = "你好\n".as_bytes().to_vec();
        input.extend_from_slice(&vec![b'z'; 200_000]);
        input.extend_from_slice("\n几岁\n".as_bytes());
        client.send(&input);
        assert_eq!(client.line(), "你好啊");
        assert_eq!(client.line(), "error: line too long");
        assert!(client.rest().is_empty());
        still_serves(&server);
    }

    fn max_line_is_configurable(mode) {
        let server = start(mode, &["--max-line", "16"]);
        let mut client = Client::connect(&server);
        assert_eq!(client.ask("你好你好"), "你好啊"); // 12 bytes
        client.send("你好你好你好\n".as_bytes()); // 18 bytes
        assert_eq!(client.line(), "error: line too long");
        assert!(client.rest().is_empty());
        still_serves(&server);
    }

    /// A line over the limit is refused while the client is still sending
    /// (the server stops reading it); invalid UTF-8 among 100 pipelined
    /// questions; a line cut by a reset.
    fn lines_over_the_limit_while_sending_and_lines_cut_by_a_reset(mode) {
        let server = start(mode, &["--max-line", "64"]);
        let addr = server.addr();
        let default = "人家还小，不知道。\n";
        // Exactly the limit is a question; the limit plus one is too long, and
        // the connection closes after the error, however much more is coming.
        let mut stream = support::connect(&addr);
        let mut exact = vec![b'x'; 64];
        exact.extend_from_slice(b"\r\n");
        stream.write_all(&exact).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, default);
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'y'; 1 << 16];
            let mut sent = 0;
            while sent < 64 << 20 && stream.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "error: line too long\n");
        let sent = writer.join().unwrap();
        assert!(
            sent < 64 << 20,
            "the server kept reading a line that was too long"
        );
        // Invalid UTF-8 is answered and the connection goes on; 100 pipelined
        // questions are answered in order.
        let mut stream = support::connect(&addr);
        let mut batch = b"\xff\xfe\n".to_vec();
        for i in 0..100 {
            batch.extend_from_slice(if i % 2 == 0 {
                "你好\n".as_bytes()
            } else {
                b"?\r\n"
            });
        }
        stream.write_all(&batch).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answers = String::new();
        stream.read_to_string(&mut answers).unwrap();
        let answers: Vec<&str> = answers.lines().collect();
        assert_eq!(answers.len(), 101);
        assert_eq!(answers[0], "error: invalid UTF-8");
        for (i, answer) in answers[1..].iter().enumerate() {
            assert_eq!(
                *answer,
                if i % 2 == 0 {
                    "你好啊"
                } else {
                    "人家还小，不知道。"
                }
            );
        }
        // Cut mid-line by a reset.
        let mut stream = support::connect(&addr);
        stream.write_all("你好 but no newline".as_bytes()).unwrap();
        support::reset(stream);
        let mut stream = support::connect(&addr);
        stream.write_all("几岁\n".as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "我两岁啦\n");
    }

    fn answers_file_replaces_the_table_in_its_order(mode) {
        let dir = TempDir::new("qa-answers");
        let file = dir.write(
            "answers.json",
            r#"{"weather": "晴天", "rain": "带伞", "你好": "hello!"}"#,
        );
        let server = start(mode, &["--answers", file.to_str().unwrap()]);
        let mut client = Client::connect(&server);
        assert_eq!(
            client.ask("rain or weather?"),
            "晴天",
            "the file's order, not the text's"
        );
        assert_eq!(client.ask("rain"), "带伞");
        assert_eq!(client.ask("你好"), "hello!");
        assert_eq!(client.ask("几岁"), DEFAULT, "the built-in table is gone");
    }

    fn answers_file_errors_exit_1(mode) {
        let dir = TempDir::new("qa-bad-answers");
        let cases = [
            ("missing.json", None, "No such file"),
            ("broken.json", Some("{\"a\": "), "not valid JSON"),
            ("array.json", Some("[\"a\"]"), "not a JSON object"),
            ("number.json", Some("{\"a\": 1}"), "not a string"),
        ];
        for (name, content, reason) in cases {
            let path = dir.join(name);
            if let Some(content) = content {
                std::fs::write(&path, content).unwrap();
            }
            let path = path.to_str().unwrap();
            let (status, out, err) = run_with_input(
                &mut support::serve_command(
                    "qa",
                    mode,
                    &["--bind", "tcp://127.0.0.1:0", "--answers", path],
                ),
                b"",
            );
            assert_eq!(status.code(), Some(1), "{name}: {err}");
            assert!(out.is_empty(), "nothing is announced");
            let prefix = format!("error: cannot load --answers {path}: ");
            assert!(
                err.starts_with(&prefix) && err.contains(reason),
                "{name}: {err}"
            );
        }
    }

    fn unix_socket_and_transport_pairing(mode) {
        let dir = TempDir::new("qa-unix");
        let sock = dir.join("qa.sock");
        let url = format!("unix:{}", sock.display());
        let server = serve("qa", mode, &["--bind", &url], 1);
        assert_eq!(server.url(), url);
        let mut stream = UnixStream::connect(&sock).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.write_all("你好\n几岁\n".as_bytes()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answers = String::new();
        stream.read_to_string(&mut answers).unwrap();
        assert_eq!(answers, "你好啊\n我两岁啦\n");

        for bad in ["udp://127.0.0.1:0", "unixgram:/tmp/x.sock"] {
            let (status, _, err) = run_with_input(
                &mut support::serve_command("qa", mode, &["--bind", bad]),
                b"",
            );
            assert_eq!(status.code(), Some(2), "{bad}: {err}");
        }
    }

    fn client_command_with_arguments_and_standard_input(mode) {
        let server = start(mode, &[]);
        let (status, out, err) = run_with_input(
            program().args(["client", "qa", "--connect", server.url(), "你好", "几岁了"]),
            b"",
        );
        assert!(status.success(), "{err}");
        assert_eq!(String::from_utf8(out).unwrap(), "你好啊\n我两岁啦\n");

        let (status, out, err) = run_with_input(
            program().args(["client", "qa", "--connect", server.url()]),
            "叫什么\r\n\nhi\n".as_bytes(),
        );
        assert!(status.success(), "{err}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("我叫小美\n{DEFAULT}\n{DEFAULT}\n")
        );
    }

    fn the_course_python_client_works_unchanged(mode) {
        let Some(mut client) = support::course_client("qa_client.py") else {
            return;
        };
        let server = start(mode, &[]);
        let (host, port) = server.host_port();
        let (status, out, err) = run_with_input(
            client.args([
                host.as_str(),
                port.as_str(),
                "你好",
                "你叫什么",
                "今天天气",
                "你几岁",
                "男生女生？",
                "睡了",
            ]),
            b"",
        );
        assert!(status.success(), "python client failed: {err}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("你好啊\n我叫小美\n{DEFAULT}\n我两岁啦\n我是机器人\n吸引才是最重要的\n")
        );
    }
}
