//! echo-upper: every byte back, ASCII letters uppercased.

use std::io::{self, Read, Write};

use crate::{DatagramRequest, RequestHandler, StreamRequest};

/// The course's first server: sends every byte back with ASCII letters
/// uppercased (Python's `bytes.upper()`), in order, unframed.
///
/// On a stream, bytes go back as they come, and the connection closes when
/// the client's input ends; on datagrams, each packet is answered by one packet
/// (an empty one by an empty one). Nothing is allocated per message.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoUpper;

impl RequestHandler<StreamRequest> for EchoUpper {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = req.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            buf[..n].make_ascii_uppercase();
            req.write_all(&buf[..n])?;
        }
    }
}

impl RequestHandler<DatagramRequest> for EchoUpper {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        req.packet_mut().make_ascii_uppercase();
        req.reply(req.packet())
    }
}
