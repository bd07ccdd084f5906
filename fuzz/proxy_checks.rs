//! The checks of the PROXY protocol header parser
//! (`socketserver::layer::proxy`) for one input, shared by the fuzz target
//! (`fuzz_targets/proxy_header.rs`) and, through `checks.rs`, the replay of
//! its saved inputs in `tests/fuzz_regressions.rs`.
//!
//! For any input: no panic; the verdicts of its prefixes are "incomplete"
//! up to one byte and then one verdict that stays (a refusal or a header of
//! a fixed length, never longer than the input); a header's addresses
//! survive being written again by the encoders; `read_header`, fed the
//! input in uneven chunks, agrees with `parse` and leaves exactly the
//! unread bytes; and where the `ppp` crate also finds a header, both find
//! the same length and addresses (`ppp`'s addresses mapped as this crate's
//! rules map them: `LOCAL`, transport UNSPEC, UNSPEC, UNIX and `UNKNOWN` keep
//! the real peer). Its includer includes `ppp_reference.rs` beside it.

use std::io::{self, Read};

use super::ppp_reference::ppp_header;
use socketserver::layer::proxy::{self, Parsed, ProxyError, Version};

/// Checks the parser on `data`; panics where a rule is broken.
pub fn check(data: &[u8]) {
    let verdict = proxy::parse(data);
    prefixes_agree(data, &verdict);
    if let Ok(Parsed::Complete { header, length }) = verdict {
        assert!(length <= data.len());
        if let (Some(source), Some(destination)) = (header.source, header.destination) {
            let again = match header.version {
                Version::V1 => proxy::v1_header(source, destination),
                Version::V2 => proxy::v2_header(source, destination),
            };
            let Ok(Parsed::Complete { header: back, .. }) = proxy::parse(&again) else {
                panic!("the encoders write what parse reads");
            };
            assert_eq!(
                (back.source, back.destination),
                (header.source, header.destination)
            );
        } else {
            assert_eq!(header.destination, None);
        }
        if let Some((addresses, their_length)) = ppp_header(data) {
            assert_eq!(their_length, length, "ppp finds another length");
            assert_eq!(
                addresses,
                header.source.zip(header.destination),
                "ppp finds other addresses"
            );
        }
    }
    read_header_agrees(data, &verdict);
}

/// Every prefix is incomplete until the first that is not; from there on,
/// every prefix gets that same verdict.
fn prefixes_agree(data: &[u8], verdict: &Result<Parsed, ProxyError>) {
    let mut decided = None;
    for end in 0..=data.len() {
        let now = proxy::parse(&data[..end]);
        match (&decided, now) {
            (None, Ok(Parsed::Incomplete)) => {}
            (None, now) => decided = Some(now),
            (Some(first), now) => assert_eq!(first, &now, "the verdict changed at {end} bytes"),
        }
        // Past a version 1 line's limit, or once decided, the rest follows.
        if decided.is_some() && end > proxy::V1_MAX_LEN {
            break;
        }
    }
    assert_eq!(decided.as_ref().unwrap_or(&Ok(Parsed::Incomplete)), verdict);
}

/// Serves the input in chunks of 1 to 13 bytes.
struct Chunked<'a> {
    data: &'a [u8],
    reads: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        let chunk = (self.reads * 7 % 13 + 1)
            .min(buf.len())
            .min(self.data.len());
        buf[..chunk].copy_from_slice(&self.data[..chunk]);
        self.data = &self.data[chunk..];
        Ok(chunk)
    }
}

fn read_header_agrees(data: &[u8], verdict: &Result<Parsed, ProxyError>) {
    let mut reader = Chunked { data, reads: 0 };
    let mut buf = Vec::new();
    let result = proxy::read_header(&mut reader, &mut buf);
    // What was read is the input's start, and the reader kept the rest.
    assert_eq!(buf.as_slice(), &data[..buf.len()]);
    assert_eq!(buf.len() + reader.data.len(), data.len());
    match (verdict, result) {
        (Ok(Parsed::Complete { header, length }), Ok((read, read_length))) => {
            assert_eq!((header, length), (&read, &read_length));
        }
        (Err(error), Err(read)) => {
            assert_eq!(read.kind(), io::ErrorKind::InvalidData);
            assert_eq!(ProxyError::from_io(&read), Some(error));
        }
        (Ok(Parsed::Incomplete), Err(read)) => {
            assert_eq!(read.kind(), io::ErrorKind::UnexpectedEof);
        }
        (verdict, result) => panic!("parse: {verdict:?}, read_header: {result:?}"),
    }
}
