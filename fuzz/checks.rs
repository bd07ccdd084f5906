//! The properties that the fuzz targets check, one function per target.
//! Shared by the targets (`fuzz_targets/*.rs`) and by the main test suite
//! (`tests/fuzz_regressions.rs`), which replays every saved input under
//! `fuzz/seeds/` and `fuzz/regressions/` through them.
#![allow(dead_code)]

#[path = "ppp_reference.rs"]
mod ppp_reference;
#[path = "proxy_checks.rs"]
mod proxy_checks;

use std::io::{BufReader, Read};
use std::path::{Component, Path};

use serde_json::Value;
use socketserver::protocol::exec::Answer as ExecAnswer;
use socketserver::protocol::files::{
    Answer as FilesAnswer, BadRequest, Fetched, Listing, Request, Stored,
};
use socketserver::protocol::framing::{body, parse_header, Endian, FrameCodec, FrameError};
use socketserver::protocol::line::{read_line, Line};
use socketserver::services::exec::split_command;
use socketserver::services::files::{check_file_name, MAX_NAME_BYTES, TEMP_PREFIX};
use socketserver::services::http::{ParsedHead, StaticHttp};
use socketserver::SocketUrl;

/// Runs the check named `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "frames" => frames(data),
        "json_header" => json_header(data),
        "command_line" => command_line(data),
        "file_name" => file_name(data),
        "socket_url" => socket_url(data),
        "line_reader" => line_reader(data),
        "http_head" => http_head(data),
        "files_request" => files_request(data),
        "answers" => answers(data),
        "proxy_header" => proxy_checks::check(data),
        other => panic!("no fuzz target named {other}"),
    }
}

/// The names of the targets.
pub const TARGETS: &[&str] = &[
    "frames",
    "json_header",
    "command_line",
    "file_name",
    "socket_url",
    "line_reader",
    "http_head",
    "files_request",
    "answers",
    "proxy_header",
];

/// Length-prefixed frames and bodies: any input reads as whole frames, a
/// clean end, or a named error; payloads never exceed the limit, buffers
/// grow with what arrives, and what was read writes back byte for byte.
pub fn frames(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let order = if control & 1 == 0 {
        Endian::Little
    } else {
        Endian::Big
    };
    // Either the default 16 MiB limit or a small one, so both paths run.
    let limit = if control & 2 == 0 {
        16 << 20
    } else {
        u32::from(control >> 2) * 64
    };
    let framing = FrameCodec::new().endian(order).max_frame(limit);
    let mut rest = input;
    let mut payload = Vec::new();
    let mut rewritten = Vec::new();
    loop {
        match framing.read_frame_into(&mut rest, &mut payload) {
            Ok(true) => {
                assert!(payload.len() <= limit as usize);
                framing.write_frame(&mut rewritten, &payload).unwrap();
            }
            Ok(false) => {
                assert_eq!(rewritten, input, "frames write back as they came");
                break;
            }
            Err(e) => {
                let error = FrameError::from_io(&e).expect("a frame error");
                match error {
                    FrameError::TooLarge { len, limit: l } => assert!(*len > u64::from(*l)),
                    FrameError::TruncatedLength { got } => assert!(*got < 4),
                    FrameError::TruncatedPayload { got, expected } => assert!(got < expected),
                    other => panic!("unexpected {other:?}"),
                }
                break;
            }
        }
        assert!(payload.capacity() <= (64 << 10).max(2 * input.len()));
    }
    // A body of a size taken from the input reads at most that much.
    let size = u64::from(control) * 3;
    let mut out = Vec::new();
    match body(input, size).read_to_end(&mut out) {
        Ok(n) => assert!(n as u64 == size && out[..] == input[..n]),
        Err(e) => assert!(
            matches!(
                FrameError::from_io(&e),
                Some(FrameError::TruncatedBody { .. })
            ) && out == input
        ),
    }
}

/// JSON-header frames: any input is a header object, a clean end, or a named
/// error; an accepted header writes back and reads again as the same object.
pub fn json_header(data: &[u8]) {
    // The payload alone, as the parser sees it.
    if let Ok(object) = parse_header(data) {
        let framing = FrameCodec::new();
        let mut wire = Vec::new();
        framing.write_header(&mut wire, &object).unwrap();
        let back = framing
            .read_header(&wire[..], &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&Value::Object(back)).unwrap(),
            serde_json::to_string(&Value::Object(object)).unwrap()
        );
    }
    // The same bytes as a stream: a length, then whatever follows.
    let framing = FrameCodec::new().max_header(4096);
    let mut rest = data;
    let mut scratch = Vec::new();
    while let Ok(Some(_)) = framing.read_header(&mut rest, &mut scratch) {}
    assert!(scratch.capacity() <= (64 << 10).max(2 * data.len()));
}

/// The exec command-line splitter: any text splits into words or is refused
/// with the one error; words quoted again split back the same.
pub fn command_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match split_command(line) {
        Ok(words) => {
            let again = split_command(&shell_words::join(&words)).unwrap();
            assert_eq!(again, words);
        }
        Err(why) => assert_eq!(why, "unbalanced quotes in the command line"),
    }
}

/// The files name checker: an accepted name is one plain component of at
/// most 255 bytes that stays in the directory.
pub fn file_name(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if check_file_name(name).is_ok() {
        let dir = Path::new("/srv/received");
        let path = dir.join(name);
        assert_eq!(path.parent(), Some(dir));
        assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(name));
        let components: Vec<_> = Path::new(name).components().collect();
        assert!(matches!(components[..], [Component::Normal(_)]), "{name:?}");
        assert!(name.len() <= MAX_NAME_BYTES);
        assert!(!name.starts_with(TEMP_PREFIX));
        assert!(!name
            .chars()
            .any(|c| c.is_ascii_control() || c == '/' || c == '\\'));
    }
}

/// `SocketUrl`: any text parses or is refused; a parsed URL prints back as
/// text that parses to the same URL.
pub fn socket_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = text.parse::<SocketUrl>() {
        let printed = url.to_string();
        assert_eq!(
            printed.parse::<SocketUrl>(),
            Ok(url),
            "printed as {printed}"
        );
    }
}

/// The bounded line reader of qa, dict and chat: through a buffer of any
/// size, no line over the limit is returned, the buffer never holds more
/// than the limit plus one byte, and complete lines with their terminators
/// are exactly the input read.
pub fn line_reader(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let max = usize::from(control & 0x3f) * 4;
    let capacity = usize::from(control >> 6) * 7 + 1;
    let mut reader = std::io::BufReader::with_capacity(capacity, input);
    let mut line = Vec::new();
    let mut rebuilt = Vec::new();
    loop {
        let outcome = read_line(&mut reader, &mut line, max).unwrap();
        assert!(line.len() <= max + 1);
        match outcome {
            Line::Complete { terminated } => {
                assert!(line.len() <= max);
                assert!(!line.contains(&b'\n'));
                rebuilt.extend_from_slice(&line);
                if terminated {
                    rebuilt.push(b'\n');
                }
            }
            Line::Eof => {
                // Every byte came back but the \r of each \r\n (and a final \r).
                let without_cr: Vec<u8> = input.iter().copied().filter(|&b| b != b'\r').collect();
                let rebuilt: Vec<u8> = rebuilt.into_iter().filter(|&b| b != b'\r').collect();
                assert_eq!(rebuilt, without_cr);
                break;
            }
            Line::TooLong => break,
        }
    }
}

/// The HTTP request head parser: any input is a request, a clean end, or
/// 400/414/431; pipelined heads parse one after another, each consuming
/// only its own bytes.
pub fn http_head(data: &[u8]) {
    let site = StaticHttp::builtin()
        .max_request_line(256)
        .max_head(1024)
        .max_headers(8);
    let mut rest = data;
    for _ in 0..16 {
        let before = rest.len();
        match site.parse_head(&mut rest).unwrap() {
            ParsedHead::Closed => {
                assert!(data[data.len() - before..]
                    .iter()
                    .all(|b| *b == b'\r' || *b == b'\n'));
                break;
            }
            ParsedHead::Bad { status, .. } => {
                assert!([400, 414, 431].contains(&status));
                break;
            }
            ParsedHead::Request {
                method,
                target,
                version,
                ..
            } => {
                assert!(!method.is_empty() && method.bytes().all(|b| b.is_ascii_graphic()));
                assert!(!target.is_empty() && target.bytes().all(|b| b.is_ascii_graphic()));
                assert!(version == "HTTP/1.1" || version == "HTTP/1.0");
                assert!(rest.len() < before, "a request consumed no input");
            }
        }
    }
}

/// The heads `site` reads one after another from `data` through a reader of
/// `capacity` bytes, up to the first that is not a request (16 at most).
pub fn http_heads(site: &StaticHttp, data: &[u8], capacity: usize) -> Vec<ParsedHead> {
    let mut reader = BufReader::with_capacity(capacity, data);
    let mut heads = Vec::new();
    for _ in 0..16 {
        let head = site.parse_head(&mut reader).unwrap();
        let last = !matches!(head, ParsedHead::Request { .. });
        heads.push(head);
        if last {
            break;
        }
    }
    heads
}

/// The files service's request decoder: any payload is a request or a
/// named refusal; a refusal closes the connection exactly when the header
/// may announce a body (a put, or not understood); an accepted request
/// writes back and decodes again as the same, with a name the checker
/// accepts.
pub fn files_request(data: &[u8]) {
    match Request::parse(data) {
        Ok(request) => {
            let text = serde_json::to_vec(&request).unwrap();
            assert_eq!(Request::parse(&text), Ok(request.clone()));
            match &request {
                Request::Put {
                    file_name, sha256, ..
                } => {
                    assert!(check_file_name(file_name).is_ok());
                    assert!(sha256.as_ref().is_none_or(|s| s.len() == 64
                        && s.bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
                }
                Request::Get { file_name } => assert!(check_file_name(file_name).is_ok()),
                Request::List => {}
            }
        }
        Err(BadRequest { reason, closes }) => {
            assert!(!reason.is_empty());
            if let Ok(header) = parse_header(data) {
                let op = header.get("op");
                let may_be_put = matches!(op, None | Some(Value::Null))
                    || op.and_then(Value::as_str) == Some("put");
                assert_eq!(closes, may_be_put, "{reason}");
            } else {
                assert!(closes, "{reason}");
            }
        }
    }
}

/// The answers clients decode (exec's, files'): any header either decodes
/// to a typed answer that writes back and decodes again as the same, or is
/// refused; nothing panics.
pub fn answers(data: &[u8]) {
    let Ok(header) = parse_header(data) else {
        return;
    };
    let value = Value::Object(header);
    fn round_trip<T>(value: &Value)
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        if let Ok(answer) = serde_json::from_value::<T>(value.clone()) {
            let text = serde_json::to_string(&answer).unwrap();
            assert!(text.starts_with("{\"status\":"), "{text}");
            assert_eq!(serde_json::from_str::<T>(&text).unwrap(), answer);
        }
    }
    round_trip::<ExecAnswer>(&value);
    round_trip::<FilesAnswer<Stored>>(&value);
    round_trip::<FilesAnswer<Fetched>>(&value);
    round_trip::<FilesAnswer<Listing>>(&value);
    if let Ok(answer) = serde_json::from_value::<ExecAnswer>(value) {
        // What a client skips or reads after the header.
        let (stdout, stderr) = match &answer {
            ExecAnswer::Ok(status) => (status.stdout_size, status.stderr_size),
            ExecAnswer::Error(failure) => (failure.stdout_size, failure.stderr_size),
        };
        assert_eq!(answer.body_size(), stdout.saturating_add(stderr));
    }
}
