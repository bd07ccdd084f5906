//! JSON-header answers on the wire (exec, files), read as raw bytes so that
//! a test sees exactly what the server sent; and SHA-256 digests in hex.

use std::io::{Read, Write};

use serde_json::Value;
use sha2::{Digest, Sha256};
use socketserver::protocol::framing::FrameCodec;

/// Reads one little-endian frame's payload (up to 16 MiB).
pub fn read_frame(stream: &mut impl Read) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("a frame length");
    let len = u32::from_le_bytes(len) as usize;
    assert!(len <= 16 << 20, "a frame of {len} bytes");
    let mut payload = vec![0u8; len];
    stream
        .read_exact(&mut payload)
        .expect("the frame's payload");
    payload
}

/// Reads one answer header (a little-endian frame) as raw text.
pub fn read_header_text(stream: &mut impl Read) -> String {
    String::from_utf8(read_frame(stream)).expect("a UTF-8 header")
}

/// Reads one answer header (a little-endian frame) as JSON.
pub fn read_answer(stream: &mut impl Read) -> Value {
    let payload = read_frame(stream);
    serde_json::from_slice(&payload).unwrap_or_else(|e| {
        panic!(
            "the answer is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&payload)
        )
    })
}

/// Writes `header` as a little-endian JSON-header frame.
pub fn send_header(stream: &mut impl Write, header: &Value) {
    FrameCodec::new()
        .write_header(stream, header)
        .expect("send a header");
}

/// The SHA-256 of `data`, in lowercase hex.
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
