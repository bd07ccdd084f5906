//! SHA-256 digests as the files protocol writes them: lowercase hex.

use std::fs::File;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// The lowercase hex form of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
    text
}

/// Whether `text` is a SHA-256 digest in hex (64 digits, any case).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sha256 of the first `size` bytes of `file`, as lowercase hex, and how
/// many bytes there were (fewer than `size` when the file is shorter).
pub fn sha256_prefix(file: &mut File, size: u64) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let hashed = io::copy(&mut file.take(size), &mut HashWriter(&mut hasher))?;
    Ok((hashed, hex(&hasher.finalize())))
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_digest_checks() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert!(is_sha256_hex(&"aB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex(&"zz".repeat(32)));
    }
}
