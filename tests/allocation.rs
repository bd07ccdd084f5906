//! What the parsers allocate, measured by a counting allocator (this test
//! binary's own global allocator): a claimed size is never allocated, and
//! what any input costs is bounded by the input, not by what it claims.
//!
//! The counts are per thread (tests run in parallel), so each measurement
//! sees only the parser it runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use socketserver::protocol::framing::{body, parse_header, Endian, FrameCodec, DEFAULT_MAX_FRAME};
use socketserver::protocol::line::{read_line, Line};
use socketserver::services::exec::split_command;
use socketserver::services::files::check_file_name;
use socketserver::services::http::StaticHttp;
use socketserver::SocketUrl;

/// Counts live bytes per thread and remembers the peak since the last reset.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counting touches only thread-local cells, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        shrank(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes this thread had allocated at once, above what it had when
/// `work` started.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let out = work();
    let peak = PEAK.with(Cell::get);
    (out, peak - base)
}

const KIB: usize = 1024;

#[test]
fn the_counter_counts() {
    let (_, peak) = peak_of(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "peak {peak}");
}

#[test]
fn an_over_limit_length_allocates_nothing_large() {
    for order in [Endian::Little, Endian::Big] {
        let framing = FrameCodec::new().endian(order);
        let wire = order.encode(u32::MAX);
        let (result, peak) = peak_of(|| framing.read_frame(&wire[..]));
        assert!(result.is_err());
        assert!(peak < KIB, "{peak} bytes for a refused 4 GiB frame");
    }
}

#[test]
fn a_claimed_frame_costs_what_arrives() {
    // 16 MiB claimed (the limit), 10 bytes sent.
    let mut wire = DEFAULT_MAX_FRAME.to_le_bytes().to_vec();
    wire.extend_from_slice(b"0123456789");
    let (result, peak) = peak_of(|| FrameCodec::new().read_frame(&wire[..]));
    assert!(result.is_err());
    assert!(peak <= 65 * KIB, "{peak} bytes for a 10-byte frame");
    // 1 MiB claimed and 300 KiB sent: what grows is what arrived (a
    // doubling vector, old and new buffers both alive while it moves).
    let mut wire = (1u32 << 20).to_le_bytes().to_vec();
    wire.extend(std::iter::repeat_n(7u8, 300 * KIB));
    let (result, peak) = peak_of(|| FrameCodec::new().read_frame(&wire[..]));
    assert!(result.is_err());
    assert!(peak <= 3 * 300 * KIB, "{peak} bytes for 300 KiB");
}

#[test]
fn a_claimed_header_costs_what_arrives() {
    let mut wire = (64u32 << 10).to_le_bytes().to_vec();
    wire.extend_from_slice(br#"{"op":"put"#);
    let (result, peak) = peak_of(|| FrameCodec::new().read_header(&wire[..], &mut Vec::new()));
    assert!(result.is_err());
    assert!(peak <= 65 * KIB, "{peak} bytes for a 10-byte header");
}

#[test]
fn a_claimed_body_allocates_nothing() {
    let data = [1u8; 100];
    let (result, peak) = peak_of(|| body(&data[..], u64::MAX).skip());
    assert!(result.is_err());
    assert!(peak < KIB, "{peak} bytes to skip a short body");
}

#[test]
fn a_huge_file_name_costs_no_copy() {
    let name = "a".repeat(1 << 20);
    let (result, peak) = peak_of(|| check_file_name(&name));
    assert!(result.is_err());
    assert!(peak < KIB, "{peak} bytes to refuse a long name");
}

#[test]
fn a_megabyte_without_a_newline_costs_the_line_limit() {
    let input = vec![b'x'; 1 << 20];
    let (outcome, peak) = peak_of(|| {
        let mut reader = std::io::BufReader::with_capacity(4096, &input[..]);
        read_line(&mut reader, &mut Vec::new(), 8 * KIB).unwrap()
    });
    assert_eq!(outcome, Line::TooLong);
    assert!(
        peak <= 8 * KIB * 3 + 8 * KIB,
        "{peak} bytes for an 8 KiB limit"
    );
    // The same through the HTTP head parser: a request line, then a field.
    let site = StaticHttp::builtin();
    let (_, peak) = peak_of(|| site.parse_head(&mut &input[..]).unwrap());
    assert!(peak <= 64 * KIB, "{peak} bytes for a 1 MiB request line");
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.extend_from_slice(&input);
    let (_, peak) = peak_of(|| site.parse_head(&mut &head[..]).unwrap());
    assert!(peak <= 4 * 64 * KIB, "{peak} bytes for a 1 MiB field");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_frame_input_costs_at_most_a_few_times_its_size(
        input in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let framing = FrameCodec::new();
        let (_, peak) = peak_of(|| {
            let mut rest = &input[..];
            let mut payload = Vec::new();
            while let Ok(true) = framing.read_frame_into(&mut rest, &mut payload) {}
        });
        prop_assert!(peak <= 64 * KIB + 3 * input.len() + KIB, "{} bytes for {}", peak, input.len());
        let (_, peak) = peak_of(|| framing.read_header(&input[..], &mut Vec::new()));
        prop_assert!(peak <= 64 * KIB + 16 * input.len() + 4 * KIB, "{} bytes for {}", peak, input.len());
    }

    #[test]
    fn header_text_costs_at_most_a_few_times_its_size(text in r#"[{}\[\]":,0-9a-z ]{0,2000}"#) {
        let (_, peak) = peak_of(|| parse_header(text.as_bytes()));
        prop_assert!(peak <= 16 * text.len() + 4 * KIB, "{} bytes for {}", peak, text.len());
    }

    #[test]
    fn any_head_costs_at_most_a_few_times_its_size(
        input in "[A-Z: /\r\n\x00-\x7f]{0,3000}".prop_map(String::into_bytes),
    ) {
        let site = StaticHttp::builtin();
        let (_, peak) = peak_of(|| site.parse_head(&mut &input[..]).unwrap());
        prop_assert!(peak <= 8 * input.len() + 4 * KIB, "{} bytes for {}", peak, input.len());
    }

    #[test]
    fn command_lines_and_urls_cost_at_most_a_few_times_their_size(text in r#"(.|['"\\ :/\[\]]){0,500}"#) {
        let (_, peak) = peak_of(|| split_command(&text));
        prop_assert!(peak <= 8 * text.len() + KIB, "{} bytes for {}", peak, text.len());
        let (_, peak) = peak_of(|| text.parse::<SocketUrl>());
        prop_assert!(peak <= 8 * text.len() + KIB, "{} bytes for {}", peak, text.len());
    }
}
