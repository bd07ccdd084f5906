//! echo-upper: every byte back, ASCII letters uppercased.

use std::io::{self, Read, Write};

use crate::{DatagramRequest, RequestHandler, StreamRequest};

/// The course's first server: sends every byte back with ASCII letters
/// uppercased (Python's `bytes.upper()`), in order, unframed.
///
/// On a stream, bytes go back as they come, and the connection closes when
/// the client's input ends; on datagrams, each packet is answered by one packet
/// (an empty one by an empty one). Nothing is allocated per message.
///
/// A connection starts with a small buffer on its thread's stack and moves to
/// one of 16 KiB on the heap, once, the first time a read fills the small
/// one: an idle or chatty connection costs no more than its
/// thread's stack (a server holding 10,000 idle connections stays near
/// 100 MiB), and bulk traffic moves in large chunks. Its reads never need the
/// request's own read buffer, so a server that runs only this handler can
/// make that buffer small ([`Options::read_buffer`](crate::Options::read_buffer)),
/// as `socketserver serve echo-upper` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoUpper;

/// The buffer a connection starts with, on the stack.
const SMALL_CHUNK: usize = 2 * 1024;
/// The most a connection reads, uppercases and writes back at once.
const LARGE_CHUNK: usize = 16 * 1024;

impl RequestHandler<StreamRequest> for EchoUpper {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut small = [0u8; SMALL_CHUNK];
        let mut large: Vec<u8> = Vec::new();
        loop {
            let buf: &mut [u8] = if large.is_empty() {
                &mut small
            } else {
                &mut large
            };
            let n = req.read(buf)?;
            if n == 0 {
                return Ok(());
            }
            buf[..n].make_ascii_uppercase();
            req.write_all(&buf[..n])?;
            if n == SMALL_CHUNK && large.is_empty() {
                large = vec![0; LARGE_CHUNK];
            }
        }
    }
}

impl RequestHandler<DatagramRequest> for EchoUpper {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        req.packet_mut().make_ascii_uppercase();
        req.reply(req.packet())
    }
}
