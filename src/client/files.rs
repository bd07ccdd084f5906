//! The client of the [files](crate::services::files) service.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Connection;
use crate::protocol::auth::{client_handshake, Key, NoChallenge};
use crate::protocol::digest::{hex, is_sha256_hex, sha256_prefix};
pub use crate::protocol::files::Entry;
use crate::protocol::files::{Answer, Fetched, Listing, Request, Stored};
use crate::protocol::framing::{body, FrameCodec, FrameError};
use crate::transport::url::SocketUrl;

/// The size of the copy buffer.
const CHUNK: usize = 64 * 1024;

/// A connection to a files server; requests go one after another.
///
/// A refusal by the server is an [`io::Error`] of kind
/// [`io::ErrorKind::Other`] whose inner error is a [`Refused`] with the
/// server's reason. Answers are read up to the frame limit, however small
/// the header limit: a listing of many files is one large answer.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::client::files::FilesClient;
/// use socketserver::protocol::framing::FrameCodec;
///
/// let url = "tcp://127.0.0.1:9004".parse().unwrap();
/// let mut client = FilesClient::connect(&url, None, FrameCodec::new(), Some(Duration::from_secs(30)))?;
/// let stored = client.put_file("photo.jpg".as_ref(), None, &mut |_sent| {})?;
/// println!("stored {} ({} bytes)", stored.file_name, stored.size);
/// for entry in client.list()? {
///     println!("{}\t{}", entry.name, entry.size);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FilesClient {
    connection: Connection,
    codec: FrameCodec,
    scratch: Vec<u8>,
}

/// The server refused a request; the text is its `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The refusal inside an error from [`FilesClient`], if it is one.
    pub fn from_io(error: &io::Error) -> Option<&Refused> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Refused>())
    }
}

/// A file the server stored (the answer to a put), or sent (to a get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// Its name on the server.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 digest, in lowercase hex.
    pub sha256: String,
}

impl FilesClient {
    /// Connects to `url`, authenticating with `key` if there is one;
    /// `timeout` bounds the connection and every read. With a key, a server
    /// that sends no challenge within `timeout` is not an authenticating
    /// files server: the error (a [`NoChallenge`]) says so.
    pub fn connect(
        url: &SocketUrl,
        key: Option<&Key>,
        codec: FrameCodec,
        timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let connection = Connection::connect(url, timeout)?;
        connection.set_read_timeout(timeout)?;
        Self::on(connection, key, codec)
            .map_err(|e| NoChallenge::explain(e, url, timeout, "a files server with a key"))
    }

    /// Uses a connection made elsewhere, authenticating with `key` if there
    /// is one.
    pub fn on(
        mut connection: Connection,
        key: Option<&Key>,
        codec: FrameCodec,
    ) -> io::Result<Self> {
        if let Some(key) = key {
            client_handshake(&mut connection, key, &codec)?;
        }
        Ok(FilesClient {
            connection,
            codec,
            scratch: Vec::new(),
        })
    }

    /// Uploads `size` bytes read from `data` as `name`, with their digest if
    /// it is known (the server then checks it). `progress` hears how many
    /// bytes went so far.
    pub fn put(
        &mut self,
        name: &str,
        data: impl Read,
        size: u64,
        sha256: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Transferred> {
        let request = Request::Put {
            file_name: name.to_string(),
            file_size: size,
            sha256: sha256.map(str::to_string),
        };
        self.codec.write_header(&mut self.connection, &request)?;
        let mut source = body(data, size);
        let mut buf = vec![0u8; usize::try_from(size).map_or(CHUNK, |size| size.min(CHUNK))];
        let mut sent = 0;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot read the data to send: {e}"),
                    ))
                }
            };
            if let Err(e) = self.connection.write_all(&buf[..n]) {
                // The server may have refused the upload and closed: its
                // answer says why, if it still arrives.
                return Err(match self.answer::<Stored>() {
                    Ok(Err(refused)) => refused,
                    _ => e,
                });
            }
            sent += n as u64;
            progress(sent);
        }
        let stored = self.answer::<Stored>()??;
        Ok(Transferred {
            file_name: stored.file_name,
            size: stored.size,
            sha256: stored.sha256,
        })
    }

    /// Uploads a file under `name` (by default its own file name), sending
    /// its digest so that the server checks what it stored.
    pub fn put_file(
        &mut self,
        path: &Path,
        name: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Transferred> {
        let name = match name {
            Some(name) => name.to_string(),
            None => path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} has no usable file name", path.display()),
                    )
                })?
                .to_string(),
        };
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        let (hashed, digest) = sha256_prefix(&mut file, size)?;
        if hashed != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} changed while being read", path.display()),
            ));
        }
        let file = File::open(path)?;
        self.put(&name, file, size, Some(&digest), progress)
    }

    /// Downloads `name` into `out`, checking its digest; `progress` hears
    /// how many bytes came so far and how many will.
    pub fn get(
        &mut self,
        name: &str,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64, u64),
    ) -> io::Result<Transferred> {
        let request = Request::Get {
            file_name: name.to_string(),
        };
        self.codec.write_header(&mut self.connection, &request)?;
        let fetched = self.answer::<Fetched>()??;
        let size = fetched.file_size;
        let mut hasher = Sha256::new();
        let mut incoming = body(&mut self.connection, size);
        let mut buf = vec![0u8; usize::try_from(size).map_or(CHUNK, |size| size.min(CHUNK))];
        let mut received = 0;
        progress(0, size);
        loop {
            let n = match incoming.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            received += n as u64;
            progress(received, size);
        }
        out.flush()?;
        let digest = hex(&hasher.finalize());
        let expected = &fetched.sha256;
        if is_sha256_hex(expected) && !digest.eq_ignore_ascii_case(expected) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sha256 mismatch for {name}: the server announced {expected}, the data is {digest}"),
            ));
        }
        Ok(Transferred {
            file_name: fetched.file_name,
            size,
            sha256: digest,
        })
    }

    /// Downloads `name` into the file `path`, through a temporary file next
    /// to it that is renamed into place once the digest checked out (an
    /// existing file at `path` is replaced: check first if it must not be).
    pub fn get_to_file(
        &mut self,
        name: &str,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> io::Result<Transferred> {
        let temp = temp_path_for(path);
        let result = File::create(&temp).and_then(|mut file| {
            let fetched = self.get(name, &mut file, progress)?;
            file.sync_all()?;
            fs::rename(&temp, path)?;
            Ok(fetched)
        });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Lists the server's files.
    pub fn list(&mut self) -> io::Result<Vec<Entry>> {
        self.codec
            .write_header(&mut self.connection, &Request::List)?;
        Ok(self.answer::<Listing>()??.files)
    }

    /// The connection, to set timeouts or close it.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Reads an answer: the outer error is the connection's, the inner one
    /// the server's refusal (a [`Refused`]).
    fn answer<T: DeserializeOwned>(&mut self) -> io::Result<io::Result<T>> {
        let answer: Answer<T> = match self
            .codec
            .read_answer_as(&mut self.connection, &mut self.scratch)
        {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ))
            }
            Err(e) => {
                return Err(match FrameError::from_io(&e) {
                    Some(FrameError::BadHeader(why)) => io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "unexpected answer: {} ({why})",
                            String::from_utf8_lossy(&self.scratch)
                        ),
                    ),
                    _ => e,
                })
            }
        };
        Ok(match answer {
            Answer::Ok(value) => Ok(value),
            Answer::Error(refusal) => Err(io::Error::other(Refused(refusal.error))),
        })
    }
}

/// `dir/.NAME.part` for `dir/NAME`.
fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.part"))
}
