//! The services of the classic socket-programming course, as handlers that
//! any server of this crate can run.
//!
//! Each is a [`RequestHandler`](crate::RequestHandler) type; the
//! `socketserver serve SERVICE` program mounts them on the transports that the
//! service speaks, and [`crate::client`] talks to them.

mod echo_upper;
pub mod exec;
pub mod files;
mod wire;

pub use echo_upper::EchoUpper;
pub use exec::Exec;
pub use files::Files;
