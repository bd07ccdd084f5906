//! The services of the classic socket-programming course, as handlers that
//! any server of this crate can run.
//!
//! Each is a [`RequestHandler`](crate::RequestHandler) type; the
//! `socketserver serve SERVICE` program mounts them on the transports that the
//! service speaks, and [`crate::client`] talks to them.

pub mod auth;
pub mod chat;
pub mod dict;
mod echo_upper;
pub mod exec;
pub mod files;
pub mod http;
mod line_reply;
pub mod qa;

pub use auth::{AuthConfig, Authenticated};
pub use chat::ChatRoom;
pub use dict::Dictionary;
pub use echo_upper::EchoUpper;
pub use exec::Exec;
pub use files::Files;
pub use http::StaticHttp;
pub use qa::QaBot;
