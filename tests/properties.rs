//! Property tests of every parser and codec: frames in both byte orders,
//! limits and truncation, JSON headers and bodies, the exec command-line
//! splitter, the typed exec and files messages (requests, answers), the
//! files name checker, the handshake's startup limit, `SocketUrl`, the
//! bounded line reader of qa, dict and chat, and the HTTP request head
//! parser. Round trips hold, and
//! no input panics or grows a buffer past its limit (allocation itself is
//! measured in `tests/allocation.rs`, which has a counting allocator).
//!
//! Case counts are modest so that the whole file runs in seconds; the
//! coverage-guided fuzz targets under `fuzz/` search longer.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::io::{self, BufReader, Read};
use std::path::{Component, Path};

use checks::http_heads;
use proptest::prelude::*;
use serde_json::{Map, Value};
use socketserver::protocol::exec::{Answer as ExecAnswer, Status};
use socketserver::protocol::files::{Answer as FilesAnswer, Entry, Listing, Request};
use socketserver::protocol::framing::{body, parse_header, Endian, FrameCodec, FrameError};
use socketserver::protocol::line::{read_line, Line};
use socketserver::services::auth::StartupLimit;
use socketserver::services::exec::split_command;
use socketserver::services::files::{check_file_name, MAX_NAME_BYTES, TEMP_PREFIX};
use socketserver::services::http::{ParsedHead, StaticHttp};
use socketserver::SocketUrl;

/// How much a payload buffer may reserve before any byte arrives.
const EAGER: usize = 64 << 10;

fn endian() -> impl Strategy<Value = Endian> {
    prop_oneof![Just(Endian::Little), Just(Endian::Big)]
}

fn frame_error(e: &io::Error) -> FrameError {
    FrameError::from_io(e)
        .unwrap_or_else(|| panic!("not a frame error: {e}"))
        .clone()
}

/// A reader that hands out at most `step` bytes per read, to exercise
/// partial reads.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// JSON values a header may carry: scalars, strings with any characters,
/// and nested arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Short binary fractions: serde_json (without its `float_roundtrip`
        // feature) may miss the last bit of an arbitrary float, which no
        // header of these protocols carries.
        (any::<i16>(), 0i32..5).prop_map(|(m, e)| Value::from(f64::from(m) / 2f64.powi(e))),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((".{0,12}", json_value()), 0..8)
        .prop_map(|pairs| pairs.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn lengths_encode_and_decode_in_both_orders(n in any::<u32>()) {
        prop_assert_eq!(Endian::Little.encode(n), n.to_le_bytes());
        prop_assert_eq!(Endian::Big.encode(n), n.to_be_bytes());
        for order in [Endian::Little, Endian::Big] {
            prop_assert_eq!(order.decode(order.encode(n)), n);
        }
    }

    #[test]
    fn frames_round_trip(
        order in endian(),
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2048), 0..8),
        step in 1usize..64,
    ) {
        let largest = payloads.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let framing = FrameCodec::new().endian(order).max_frame(largest);
        let mut wire = Vec::new();
        for payload in &payloads {
            framing.write_frame(&mut wire, payload).unwrap();
        }
        prop_assert_eq!(
            wire.len(),
            payloads.iter().map(|p| 4 + p.len()).sum::<usize>()
        );
        let mut input = Trickle { data: &wire, step };
        let mut payload = Vec::new();
        for expected in &payloads {
            prop_assert!(framing.read_frame_into(&mut input, &mut payload).unwrap());
            prop_assert_eq!(&payload, expected);
        }
        prop_assert!(!framing.read_frame_into(&mut input, &mut payload).unwrap());
        prop_assert!(payload.is_empty());
    }

    #[test]
    fn truncation_at_every_byte_is_reported(
        order in endian(),
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let framing = FrameCodec::new().endian(order);
        let mut wire = Vec::new();
        framing.write_frame(&mut wire, &payload).unwrap();
        prop_assert_eq!(framing.read_frame(&wire[..0]).unwrap(), None);
        for cut in 1..wire.len() {
            let e = framing.read_frame(&wire[..cut]).unwrap_err();
            prop_assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            let expected = if cut < 4 {
                FrameError::TruncatedLength { got: cut }
            } else {
                FrameError::TruncatedPayload {
                    got: (cut - 4) as u64,
                    expected: payload.len() as u64,
                }
            };
            prop_assert_eq!(frame_error(&e), expected);
        }
        prop_assert_eq!(framing.read_frame(&wire[..]).unwrap(), Some(payload));
    }

    #[test]
    fn an_over_limit_length_is_refused_without_allocating(
        order in endian(),
        limit in 0u32..1 << 24,
        excess in 1u32..,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let claimed = limit.saturating_add(excess).max(limit + 1);
        let framing = FrameCodec::new().endian(order).max_frame(limit);
        let mut wire = order.encode(claimed).to_vec();
        wire.extend_from_slice(&tail);
        let mut payload = Vec::new();
        let e = framing.read_frame_into(&wire[..], &mut payload).unwrap_err();
        prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        prop_assert_eq!(
            frame_error(&e),
            FrameError::TooLarge { len: claimed.into(), limit }
        );
        prop_assert_eq!(
            e.to_string(),
            format!("frame of {claimed} bytes over the limit {limit}")
        );
        prop_assert_eq!(payload.capacity(), 0);
        // A header has its own limit, checked the same way.
        let header = FrameCodec::new().endian(order).max_header(limit);
        let mut scratch = Vec::new();
        let e = header.read_header(&wire[..], &mut scratch).unwrap_err();
        prop_assert_eq!(frame_error(&e), FrameError::TooLarge { len: claimed.into(), limit });
        prop_assert_eq!(scratch.capacity(), 0);
        // And nothing over the limit is ever sent.
        if (limit as usize) < 4096 {
            let mut out = Vec::new();
            let big = vec![0u8; limit as usize + 1];
            prop_assert_eq!(
                framing.write_frame(&mut out, &big).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn any_input_reads_as_frames_or_a_clean_error(
        order in endian(),
        input in prop::collection::vec(any::<u8>(), 0..4096),
        limit in prop_oneof![Just(16u32 << 20), 0u32..5000],
    ) {
        let framing = FrameCodec::new().endian(order).max_frame(limit);
        let mut rest = &input[..];
        let mut payload = Vec::new();
        let mut consumed = 0;
        loop {
            match framing.read_frame_into(&mut rest, &mut payload) {
                Ok(true) => {
                    prop_assert!(payload.len() <= limit as usize);
                    consumed += 4 + payload.len();
                }
                Ok(false) => {
                    prop_assert_eq!(consumed, input.len());
                    break;
                }
                Err(e) => {
                    prop_assert!(FrameError::from_io(&e).is_some(), "{}", e);
                    break;
                }
            }
            // The buffer grows with what arrives, not with what is claimed.
            prop_assert!(
                payload.capacity() <= EAGER.max(2 * input.len()),
                "capacity {} for {} bytes of input",
                payload.capacity(),
                input.len()
            );
        }
    }

    #[test]
    fn headers_round_trip(order in endian(), header in json_object(), step in 1usize..32) {
        let framing = FrameCodec::new().endian(order);
        let mut wire = Vec::new();
        framing.write_header(&mut wire, &header).unwrap();
        let mut input = Trickle { data: &wire, step };
        let mut scratch = Vec::new();
        let back = framing.read_header(&mut input, &mut scratch).unwrap().unwrap();
        prop_assert_eq!(
            back.keys().collect::<Vec<_>>(),
            header.keys().collect::<Vec<_>>(),
            "key order is kept"
        );
        prop_assert_eq!(Value::Object(back), Value::Object(header));
        prop_assert!(framing.read_header(&mut input, &mut scratch).unwrap().is_none());
    }

    #[test]
    fn any_header_payload_parses_or_is_named(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        match parse_header(&payload) {
            Ok(object) => {
                let text = std::str::from_utf8(&payload).unwrap();
                let value: Value = serde_json::from_str(text).unwrap();
                prop_assert_eq!(Value::Object(object), value);
            }
            Err(FrameError::HeaderNotUtf8) => prop_assert!(std::str::from_utf8(&payload).is_err()),
            Err(FrameError::HeaderNotObject) => {
                let value: Value = serde_json::from_slice(&payload).unwrap();
                prop_assert!(!value.is_object());
            }
            Err(FrameError::HeaderNotJson(_)) => {
                prop_assert!(serde_json::from_slice::<Value>(&payload).is_err());
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[{}\[\]":,0-9a-z\\ .eE+-]{0,300}"#) {
        let _ = parse_header(text.as_bytes());
    }

    #[test]
    fn bodies_read_exactly_their_size(
        data in prop::collection::vec(any::<u8>(), 0..3000),
        size in 0u64..4000,
        step in 1usize..100,
    ) {
        let mut input = Trickle { data: &data, step };
        let mut out = Vec::new();
        let result = body(&mut input, size).read_to_end(&mut out);
        if size as usize <= data.len() {
            prop_assert_eq!(result.unwrap(), size as usize);
            prop_assert_eq!(&out[..], &data[..size as usize]);
            prop_assert_eq!(input.data, &data[size as usize..]);
        } else {
            let e = result.unwrap_err();
            prop_assert_eq!(
                frame_error(&e),
                FrameError::TruncatedBody { got: data.len() as u64, expected: size }
            );
            prop_assert_eq!(out, data);
        }
    }

    #[test]
    fn command_lines_round_trip_through_quoting(words in prop::collection::vec(".{0,12}", 1..6)) {
        let line = shell_words::join(&words);
        prop_assert_eq!(split_command(&line).unwrap(), words);
    }

    #[test]
    fn any_command_line_splits_or_is_refused(line in r#"(.|['"\\ ]){0,80}"#) {
        match split_command(&line) {
            Ok(words) => {
                // Splitting is stable: quoting the words again gives them back.
                let again = split_command(&shell_words::join(&words)).unwrap();
                prop_assert_eq!(again, words);
            }
            Err(why) => prop_assert_eq!(why, "unbalanced quotes in the command line"),
        }
    }

    #[test]
    fn an_accepted_file_name_stays_in_the_directory(name in r#"(.|[./\\]){0,40}"#) {
        if check_file_name(&name).is_ok() {
            let dir = Path::new("/srv/received");
            let path = dir.join(&name);
            prop_assert_eq!(path.parent(), Some(dir));
            prop_assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(name.as_str()));
            let components: Vec<_> = Path::new(&name).components().collect();
            prop_assert!(
                matches!(components[..], [Component::Normal(_)]),
                "{:?}",
                components
            );
            prop_assert!(name.len() <= MAX_NAME_BYTES);
            prop_assert!(!name.starts_with(TEMP_PREFIX));
        }
    }

    #[test]
    fn plain_names_are_accepted_and_refused_characters_are_not(
        name in "[^/\\\\\u{0}-\u{1f}\u{7f}]{1,60}",
        refused in prop_oneof![Just('/'), Just('\\'), Just('\0'), Just('\u{7f}'), (0u8..0x20).prop_map(char::from)],
        at in any::<prop::sample::Index>(),
    ) {
        let expected_ok = name != "." && name != ".." && name.len() <= MAX_NAME_BYTES;
        prop_assert_eq!(check_file_name(&name).is_ok(), expected_ok, "{:?}", name);
        let mut chars: Vec<char> = name.chars().collect();
        chars.insert(at.index(chars.len() + 1), refused);
        let bad: String = chars.into_iter().collect();
        prop_assert!(check_file_name(&bad).is_err(), "{:?}", bad);
    }

    #[test]
    fn files_requests_round_trip(
        name in "[^/\\\\\u{0}-\u{1f}\u{7f}]{1,40}",
        size in any::<u64>(),
        digest in prop::option::of("[0-9a-fA-F]{64}"),
        op in 0u8..3,
    ) {
        prop_assume!(check_file_name(&name).is_ok());
        let request = match op {
            0 => Request::Put { file_name: name, file_size: size, sha256: digest.map(|d| d.to_ascii_lowercase()) },
            1 => Request::Get { file_name: name },
            _ => Request::List,
        };
        let text = serde_json::to_string(&request).unwrap();
        prop_assert!(text.starts_with("{\"op\":"), "{}", text);
        prop_assert_eq!(Request::parse(text.as_bytes()), Ok(request));
    }

    #[test]
    fn any_files_header_is_a_request_or_a_refusal(header in json_object(), op in prop::option::of(".{0,6}")) {
        let mut header = header;
        if let Some(op) = op {
            header.insert("op".into(), Value::String(op));
        }
        let text = serde_json::to_vec(&Value::Object(header.clone())).unwrap();
        match Request::parse(&text) {
            Ok(request) => {
                let again = serde_json::to_vec(&request).unwrap();
                prop_assert_eq!(Request::parse(&again), Ok(request));
            }
            Err(bad) => {
                prop_assert!(!bad.reason.is_empty());
                // Only what may be a put (whose body follows) closes.
                let may_be_put = match header.get("op") {
                    None | Some(Value::Null) => true,
                    Some(op) => op.as_str() == Some("put"),
                };
                prop_assert_eq!(bad.closes, may_be_put, "{}", bad.reason);
            }
        }
    }

    #[test]
    fn exec_answers_round_trip_with_their_keys_in_order(
        exit_code in prop::option::of(any::<i32>()),
        signal in prop::option::of(1i32..65),
        stdout_size in any::<u64>(),
        stderr_size in any::<u64>(),
        timed_out in any::<bool>(),
        truncated in any::<bool>(),
        why in ".{0,40}",
    ) {
        let status = Status { exit_code, signal, stdout_size, stderr_size, timed_out, truncated };
        let text = serde_json::to_string(&ExecAnswer::Ok(status.clone())).unwrap();
        let keys: Vec<String> = serde_json::from_str::<Map<String, Value>>(&text).unwrap().keys().cloned().collect();
        prop_assert_eq!(
            keys,
            ["status", "exit_code", "signal", "stdout_size", "stderr_size", "timed_out", "truncated"]
        );
        prop_assert_eq!(serde_json::from_str::<ExecAnswer>(&text).unwrap(), ExecAnswer::Ok(status));
        let refused = ExecAnswer::refused(why.clone());
        let text = serde_json::to_string(&refused).unwrap();
        prop_assert_eq!(text, format!(
            "{{\"status\":\"error\",\"error\":{},\"stdout_size\":0,\"stderr_size\":0}}",
            serde_json::to_string(&why).unwrap()
        ));
    }

    #[test]
    fn listings_round_trip(entries in prop::collection::vec((".{0,30}", any::<u64>()), 0..20)) {
        let files: Vec<Entry> = entries.into_iter().map(|(name, size)| Entry { name, size }).collect();
        let answer = FilesAnswer::Ok(Listing { files });
        let text = serde_json::to_string(&answer).unwrap();
        prop_assert_eq!(serde_json::from_str::<FilesAnswer<Listing>>(&text).unwrap(), answer);
    }

    #[test]
    fn startup_limits_round_trip_and_their_chance_only_rises(
        start in 1usize..500,
        extra in 0usize..500,
        rate in 0u8..=100,
        probes in prop::collection::vec(0usize..1200, 1..20),
    ) {
        let limit = StartupLimit::new(start, rate, start + extra).unwrap();
        prop_assert_eq!(limit.to_string().parse::<StartupLimit>(), Ok(limit));
        let mut probes = probes;
        probes.sort_unstable();
        let chances: Vec<f64> = probes.iter().map(|&n| limit.refusal_chance(n)).collect();
        prop_assert!(chances.windows(2).all(|w| w[0] <= w[1]), "{:?}", chances);
        prop_assert!(chances.iter().all(|c| (0.0..=1.0).contains(c)));
        for (&n, &chance) in probes.iter().zip(&chances) {
            prop_assert_eq!(chance == 0.0, n < start || (rate == 0 && n == start && extra > 0));
            prop_assert_eq!(chance == 1.0, n >= start + extra || (rate == 100 && n >= start));
        }
    }

    #[test]
    fn any_text_is_a_startup_limit_or_refused(text in "[0-9:]{0,12}") {
        if let Ok(limit) = text.parse::<StartupLimit>() {
            prop_assert!(1 <= limit.start() && limit.start() <= limit.full() && limit.rate() <= 100);
        }
    }

    #[test]
    fn names_are_refused_by_length_in_bytes(n in 1usize..400, wide in any::<bool>()) {
        let name = if wide { "é".repeat(n) } else { "a".repeat(n) };
        prop_assert_eq!(check_file_name(&name).is_ok(), name.len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn urls_that_parse_print_back_the_same(text in r#"(tcp://|udp://|unix:|unixgram:|unix://|unix:///)?(.|[:\[\]/0-9]){0,30}"#) {
        if let Ok(url) = text.parse::<SocketUrl>() {
            let printed = url.to_string();
            prop_assert_eq!(printed.parse::<SocketUrl>(), Ok(url), "printed as {}", printed);
        }
    }

    #[test]
    fn host_and_port_urls_parse(
        scheme in prop_oneof![Just("tcp"), Just("udp")],
        host in prop_oneof![
            "[a-z][a-z0-9.-]{0,20}",
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
        ],
        port in any::<u16>(),
        bad_port in 65536u32..1_000_000,
    ) {
        let text = format!("{scheme}://{host}:{port}");
        let url: SocketUrl = text.parse().unwrap();
        prop_assert_eq!(url.scheme().name(), scheme);
        prop_assert_eq!(url.to_string(), text);
        let over = format!("{scheme}://{host}:{bad_port}");
        prop_assert!(over.parse::<SocketUrl>().is_err());
        let portless = format!("{scheme}://{host}");
        prop_assert!(portless.parse::<SocketUrl>().is_err());
    }

    #[test]
    fn unix_paths_round_trip(path in "/?[^\u{0}]{1,40}", gram in any::<bool>()) {
        let url = if gram {
            SocketUrl::Unixgram(path.clone().into())
        } else {
            SocketUrl::Unix(path.clone().into())
        };
        prop_assert_eq!(url.to_string().parse::<SocketUrl>(), Ok(url));
    }
}

/// Reads lines until the end, too long a line, or an error; checks the
/// buffer bound at every step. Returns the lines and how it ended.
fn read_all_lines(input: &[u8], max: usize, capacity: usize) -> (Vec<Vec<u8>>, Line) {
    let mut reader = BufReader::with_capacity(capacity, input);
    let mut line = Vec::new();
    let mut lines = Vec::new();
    loop {
        let outcome = read_line(&mut reader, &mut line, max).unwrap();
        assert!(
            line.len() <= max + 1,
            "{} bytes buffered, max {max}",
            line.len()
        );
        match outcome {
            Line::Complete { .. } => {
                assert!(line.len() <= max);
                lines.push(line.clone());
            }
            end => return (lines, end),
        }
    }
}

/// A syntactically valid request head and what it should parse to.
fn request_head() -> impl Strategy<Value = (String, String, &'static str, Option<u64>, bool)> {
    (
        "[A-Z]{1,7}",
        "/[!-~]{0,40}",
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
        prop::option::of(0u64..1 << 40),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn lines_round_trip_through_any_buffer_size(
        lines in prop::collection::vec("[^\r\n]{0,30}", 0..10),
        crlf in any::<bool>(),
        capacity in 1usize..40,
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| format!("{l}{end}")).collect();
        let max = lines.iter().map(String::len).max().unwrap_or(0);
        let (got, end) = read_all_lines(text.as_bytes(), max, capacity);
        prop_assert_eq!(end, Line::Eof);
        let got: Vec<String> = got.into_iter().map(|l| String::from_utf8(l).unwrap()).collect();
        prop_assert_eq!(got, lines);
    }

    #[test]
    fn a_line_over_the_limit_is_too_long_however_it_arrives(
        max in 0usize..100,
        extra in 1usize..300,
        crlf in any::<bool>(),
        capacity in 1usize..64,
    ) {
        let mut input = vec![b'x'; max + extra];
        input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let (lines, end) = read_all_lines(&input, max, capacity);
        prop_assert!(lines.is_empty());
        prop_assert_eq!(end, Line::TooLong);
        // Exactly at the limit it is a line, \r\n or not.
        let mut exact = vec![b'x'; max];
        exact.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let (lines, end) = read_all_lines(&exact, max, capacity);
        prop_assert_eq!(lines, vec![vec![b'x'; max]]);
        prop_assert_eq!(end, Line::Eof);
    }

    #[test]
    fn any_bytes_read_as_bounded_lines(
        input in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..600),
        max in 0usize..80,
        capacity in 1usize..64,
    ) {
        let (lines, end) = read_all_lines(&input, max, capacity);
        prop_assert!(end == Line::Eof || end == Line::TooLong);
        if end == Line::Eof {
            // Nothing lost: the lines and their terminators make the input.
            let rebuilt: usize = lines.iter().map(Vec::len).sum();
            prop_assert!(rebuilt <= input.len());
        }
    }

    #[test]
    fn well_formed_heads_parse_to_what_they_say(
        (method, target, version, length, close) in request_head(),
        fields in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..10),
        capacity in 1usize..64,
    ) {
        // HTTP/1.1 requires exactly one Host (RFC 9112); HTTP/1.0 takes one too.
        let mut head = format!("{method} {target} {version}\r\nHost: x\r\n");
        for (name, value) in &fields {
            let lower = name.to_ascii_lowercase();
            if ["content-length", "transfer-encoding", "connection", "host"].contains(&lower.as_str()) {
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(length) = length {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\nBODY");
        let site = StaticHttp::builtin();
        let mut reader = BufReader::with_capacity(capacity, head.as_bytes());
        let parsed = site.parse_head(&mut reader).unwrap();
        prop_assert_eq!(parsed, ParsedHead::Request {
            method,
            target,
            version,
            keep_alive: !close && version == "HTTP/1.1",
            content_length: length.unwrap_or(0),
            chunked: false,
        });
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        prop_assert_eq!(rest, b"BODY", "nothing past the head is read");
    }

    #[test]
    fn pipelined_heads_parse_one_after_another(
        targets in prop::collection::vec("/[a-z0-9]{0,10}", 1..20),
        capacity in 1usize..64,
    ) {
        let text: String = targets
            .iter()
            .map(|t| format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n"))
            .collect();
        let site = StaticHttp::builtin();
        let mut reader = BufReader::with_capacity(capacity, text.as_bytes());
        for target in &targets {
            match site.parse_head(&mut reader).unwrap() {
                ParsedHead::Request { target: got, .. } => prop_assert_eq!(&got, target),
                other => prop_assert!(false, "{:?}", other),
            }
        }
        prop_assert_eq!(site.parse_head(&mut reader).unwrap(), ParsedHead::Closed);
    }

    #[test]
    fn conflicting_or_invalid_lengths_are_400(
        a in 0u64..1000,
        b in 0u64..1000,
        // Junk right after the digits (whitespace there would be trimmed as
        // the optional whitespace around a field value).
        junk in "[^0-9\\s][^0-9\r\n]{0,4}",
    ) {
        let site = StaticHttp::builtin();
        let two = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\n");
        let parsed = site.parse_head(&mut two.as_bytes()).unwrap();
        if a == b {
            let is_request = matches!(parsed, ParsedHead::Request { content_length, .. } if content_length == a);
            prop_assert!(is_request);
        } else {
            let is_400 = matches!(parsed, ParsedHead::Bad { status: 400, .. });
            prop_assert!(is_400, "{:?}", parsed);
        }
        let bad = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {a}{junk}\r\n\r\n");
        let parsed = site.parse_head(&mut bad.as_bytes()).unwrap();
        let is_400 = matches!(parsed, ParsedHead::Bad { status: 400, .. });
        prop_assert!(is_400, "{:?}", parsed);
    }

    #[test]
    fn http_1_1_needs_exactly_one_host(
        hosts in 0usize..4,
        version in prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
        name in prop_oneof![Just("Host"), Just("host"), Just("HOST")],
        capacity in 1usize..64,
    ) {
        let mut head = format!("GET / {version}\r\nAccept: */*\r\n");
        for i in 0..hosts {
            head.push_str(&format!("{name}: h{i}\r\n"));
        }
        head.push_str("\r\n");
        let mut reader = BufReader::with_capacity(capacity, head.as_bytes());
        let parsed = StaticHttp::builtin().parse_head(&mut reader).unwrap();
        let allowed = hosts == 1 || (hosts == 0 && version == "HTTP/1.0");
        if allowed {
            let is_request = matches!(parsed, ParsedHead::Request { .. });
            prop_assert!(is_request, "{:?}", parsed);
        } else {
            let is_400 = matches!(parsed, ParsedHead::Bad { status: 400, .. });
            prop_assert!(is_400, "{:?}", parsed);
        }
    }

    #[test]
    fn a_bare_cr_or_a_nul_anywhere_in_a_field_is_400(
        value in "[ -~]{0,20}",
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![Just(b'\r'), Just(b'\0')],
        capacity in 1usize..64,
    ) {
        let mut field = format!("X-Field: {value}").into_bytes();
        let at = 2 + at.index(field.len() - 1);
        field.insert(at, bad);
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        head.extend_from_slice(&field);
        head.extend_from_slice(b"\r\n\r\n");
        let mut reader = BufReader::with_capacity(capacity, &head[..]);
        let parsed = StaticHttp::builtin().parse_head(&mut reader).unwrap();
        let is_400 = matches!(parsed, ParsedHead::Bad { status: 400, .. });
        prop_assert!(is_400, "{:?}: {:?}", String::from_utf8_lossy(&head), parsed);
    }

    #[test]
    fn heads_do_not_depend_on_how_the_input_arrives(
        input in prop::collection::vec(prop_oneof![
            Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'/'), b'A'..=b'Z', any::<u8>()
        ], 0..600),
        prefix in prop::sample::select(vec![
            &b""[..], b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r\nHEAD /a HTTP/1.0\r\n",
        ]),
        capacity in 1usize..64,
    ) {
        let mut data = prefix.to_vec();
        data.extend_from_slice(&input);
        let site = StaticHttp::builtin().max_request_line(100).max_head(300).max_headers(5);
        prop_assert_eq!(
            http_heads(&site, &data, capacity),
            http_heads(&site, &data, data.len().max(1))
        );
    }

    #[test]
    fn heads_over_the_limits_get_414_or_431(
        line_over in 1usize..200,
        fields in 101usize..150,
        field_over in 1usize..300,
    ) {
        let site = StaticHttp::builtin().max_request_line(100).max_head(1000);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100 + line_over));
        let is_414 = matches!(site.parse_head(&mut long.as_bytes()).unwrap(), ParsedHead::Bad { status: 414, .. });
        prop_assert!(is_414);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..fields {
            many.push_str(&format!("X{i}: y\r\n"));
        }
        many.push_str("\r\n");
        let is_431 = matches!(StaticHttp::builtin().parse_head(&mut many.as_bytes()).unwrap(), ParsedHead::Bad { status: 431, .. });
        prop_assert!(is_431);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(1000 + field_over));
        let is_431 = matches!(site.parse_head(&mut big.as_bytes()).unwrap(), ParsedHead::Bad { status: 431, .. });
        prop_assert!(is_431);
    }

    #[test]
    fn any_bytes_as_a_head_parse_or_get_an_error_status(
        input in prop::collection::vec(prop_oneof![
            Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'/'), b'A'..=b'Z', any::<u8>()
        ], 0..600),
        capacity in 1usize..64,
    ) {
        let site = StaticHttp::builtin().max_request_line(200).max_head(400).max_headers(5);
        let mut reader = BufReader::with_capacity(capacity, &input[..]);
        match site.parse_head(&mut reader).unwrap() {
            ParsedHead::Closed => prop_assert!(input.iter().all(|b| *b == b'\r' || *b == b'\n')),
            ParsedHead::Bad { status, .. } => prop_assert!([400, 414, 431].contains(&status)),
            ParsedHead::Request { method, target, version, .. } => {
                prop_assert!(!method.is_empty() && !target.is_empty());
                prop_assert!(version == "HTTP/1.1" || version == "HTTP/1.0");
            }
        }
    }
}

#[test]
fn deeply_nested_headers_are_refused_without_overflowing_the_stack() {
    for open in ["[", "{\"a\":"] {
        let text = open.repeat(100_000);
        assert!(matches!(
            parse_header(text.as_bytes()),
            Err(FrameError::HeaderNotJson(_))
        ));
    }
}
