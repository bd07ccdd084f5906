//! The wire formats that services and clients share: length-prefixed frames
//! and JSON-header messages ([`framing`]), the HMAC challenge-response
//! ([`auth`]), the typed messages of the exec ([`exec`]) and files
//! ([`files`]) services, bounded lines ([`line`](mod@line)) and SHA-256 digests
//! ([`digest`]).
//!
//! Both sides of every protocol use these, so a server and its client can
//! never disagree on a byte.

pub mod auth;
pub mod digest;
pub mod exec;
pub mod files;
pub mod framing;
pub mod line;
