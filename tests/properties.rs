//! Property tests of every parser and codec: frames in both byte orders,
//! limits and truncation, JSON headers and bodies, the exec command-line
//! splitter, the files name checker and `SocketUrl`. Round trips hold, and
//! no input panics or grows a buffer past its limit (allocation itself is
//! measured in `tests/allocation.rs`, which has a counting allocator).
//!
//! Case counts are modest so that the whole file runs in seconds; the
//! coverage-guided fuzz targets under `fuzz/` search longer.

use std::io::{self, Read};
use std::path::{Component, Path};

use proptest::prelude::*;
use serde_json::{Map, Value};
use socketserver::framing::{body, parse_header, Endian, FrameError, Framing};
use socketserver::services::exec::split_command;
use socketserver::services::files::{check_file_name, MAX_NAME_BYTES, TEMP_PREFIX};
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
        let framing = Framing::new().endian(order).max_frame(largest);
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
        let framing = Framing::new().endian(order);
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
        let framing = Framing::new().endian(order).max_frame(limit);
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
        let header = Framing::new().endian(order).max_header(limit);
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
        let framing = Framing::new().endian(order).max_frame(limit);
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
        let framing = Framing::new().endian(order);
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
        prop_assert_eq!(url.scheme(), scheme);
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
