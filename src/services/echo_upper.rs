//! echo-upper: every byte back, ASCII letters uppercased.

use std::io;

use crate::request::{Conn, DatagramRequest, Framing, MessageHandler, Next, RequestHandler};

/// The course's first server: sends every byte back with ASCII letters
/// uppercased (Python's `bytes.upper()`), in order, unframed.
///
/// On a stream, bytes go back as they come (a message is whatever one read
/// brought, up to 16 KiB), and the connection closes when the client's input
/// ends; on datagrams, each packet is answered by one packet (an empty one by
/// an empty one). Nothing is allocated per message: the reply is built in the
/// connection's output buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoUpper;

/// The most bytes echoed in one message.
const CHUNK: usize = 16 * 1024;

impl MessageHandler for EchoUpper {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Chunk { max: CHUNK }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), bytes: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        let out = conn.output();
        let at = out.len();
        out.extend_from_slice(bytes);
        out[at..].make_ascii_uppercase();
        Ok(Next::Continue)
    }
}

impl RequestHandler<DatagramRequest> for EchoUpper {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        req.packet_mut().make_ascii_uppercase();
        req.reply(req.packet())
    }
}
