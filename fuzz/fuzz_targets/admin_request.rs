//! The admin listener's answer to arbitrary request bytes
//! (`socketserver::ops::admin::respond`): it never panics, its status is one
//! the admin listener may give, the response is well-formed HTTP/1.1 with a
//! `Content-Length` that matches its body (or, for HEAD, the body it would
//! have), and a full buffer is always answered.
#![no_main]

use socketserver::ops::admin::{respond, OpsState, MAX_HEAD};

/// A process that is ready or draining depending on the input's length, with
/// a small metrics page.
struct State {
    ready: bool,
}

impl OpsState for State {
    fn ready(&self) -> bool {
        self.ready
    }
    fn render_metrics(&self, out: &mut String) {
        out.push_str("# HELP x An example.\n# TYPE x gauge\nx 1\n");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let state = State {
        ready: data.len() % 2 == 0,
    };
    let Some(answer) = respond(data, &state) else {
        assert!(data.len() < MAX_HEAD, "a full buffer must be answered");
        return;
    };
    // 500 comes only from a panicking state, which this one is not.
    assert!(
        [200, 400, 404, 405, 414, 431, 503].contains(&answer.status),
        "status {}",
        answer.status
    );
    let bytes = &answer.bytes;
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head ends with an empty line");
    let head = std::str::from_utf8(&bytes[..end]).expect("the head is text");
    let status_line = format!("HTTP/1.1 {} ", answer.status);
    assert!(head.starts_with(&status_line), "{head}");
    assert!(head.contains("\r\nConnection: close"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    let body = &bytes[end + 4..];
    assert!(body.is_empty() || body.len() == length, "{head}");
    if answer.status == 405 {
        assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    }
});
