//! The client of the [files](crate::services::files) service.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::Connection;
use crate::protocol::auth::{client_handshake, Key};
use crate::protocol::digest::{hex, is_sha256_hex, sha256_prefix};
use crate::protocol::framing::{body, Framing};
use crate::SocketUrl;

/// The size of the copy buffer.
const CHUNK: usize = 64 * 1024;

/// A connection to a files server; requests go one after another.
///
/// A refusal by the server is an [`io::Error`] of kind
/// [`io::ErrorKind::Other`] whose inner error is a [`Refused`] with the
/// server's reason.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::client::files::FilesClient;
/// use socketserver::protocol::framing::Framing;
///
/// let url = "tcp://127.0.0.1:9004".parse().unwrap();
/// let mut client = FilesClient::connect(&url, None, Framing::new(), Some(Duration::from_secs(30)))?;
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
    framing: Framing,
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

/// A file in a `list` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

impl FilesClient {
    /// Connects to `url`, authenticating with `key` if there is one;
    /// `timeout` bounds the connection and every read.
    pub fn connect(
        url: &SocketUrl,
        key: Option<&Key>,
        framing: Framing,
        timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let connection = Connection::connect(url, timeout)?;
        connection.set_read_timeout(timeout)?;
        Self::on(connection, key, framing)
    }

    /// Uses a connection made elsewhere, authenticating with `key` if there
    /// is one.
    pub fn on(mut connection: Connection, key: Option<&Key>, framing: Framing) -> io::Result<Self> {
        if let Some(key) = key {
            client_handshake(&mut connection, key, &framing)?;
        }
        Ok(FilesClient {
            connection,
            framing,
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
        let mut header = json!({"op": "put", "file_name": name, "file_size": size});
        if let Some(digest) = sha256 {
            header["sha256"] = json!(digest);
        }
        self.framing.write_header(&mut self.connection, &header)?;
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
                return Err(match self.answer() {
                    Ok(answer) => match Self::ok(answer) {
                        Err(refused) => refused,
                        Ok(_) => e,
                    },
                    Err(_) => e,
                });
            }
            sent += n as u64;
            progress(sent);
        }
        let answer = Self::ok(self.answer()?)?;
        let stored = Transferred {
            file_name: string(&answer, "file_name")?,
            size: number(&answer, "size")?,
            sha256: string(&answer, "sha256")?,
        };
        Ok(stored)
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
        self.framing.write_header(
            &mut self.connection,
            &json!({"op": "get", "file_name": name}),
        )?;
        let answer = Self::ok(self.answer()?)?;
        let size = number(&answer, "file_size")?;
        let expected = string(&answer, "sha256")?;
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
        if is_sha256_hex(&expected) && !digest.eq_ignore_ascii_case(&expected) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sha256 mismatch for {name}: the server announced {expected}, the data is {digest}"),
            ));
        }
        Ok(Transferred {
            file_name: string(&answer, "file_name").unwrap_or_else(|_| name.to_string()),
            size,
            sha256: digest,
        })
    }

    /// Downloads `name` into the file `path`, through a temporary file next
    /// to it that is renamed into place once the digest checked out.
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
        self.framing
            .write_header(&mut self.connection, &json!({"op": "list"}))?;
        let answer = Self::ok(self.answer()?)?;
        let files = answer
            .get("files")
            .and_then(Value::as_array)
            .ok_or_else(|| bad_answer(&answer))?;
        files
            .iter()
            .map(|file| {
                let file = file.as_object().ok_or_else(|| bad_answer(&answer))?;
                Ok(Entry {
                    name: string(file, "name")?,
                    size: number(file, "size")?,
                })
            })
            .collect()
    }

    /// The connection, to set timeouts or close it.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    fn answer(&mut self) -> io::Result<Map<String, Value>> {
        self.framing
            .read_header(&mut self.connection, &mut self.scratch)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )
            })
    }

    /// The answer if it says ok; its error as a [`Refused`] otherwise.
    fn ok(answer: Map<String, Value>) -> io::Result<Map<String, Value>> {
        match answer.get("status").and_then(Value::as_str) {
            Some("ok") => Ok(answer),
            Some("error") => {
                let why = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                Err(io::Error::other(Refused(why.to_string())))
            }
            _ => Err(bad_answer(&answer)),
        }
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

fn string(map: &Map<String, Value>, key: &str) -> io::Result<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad_answer(map))
}

fn number(map: &Map<String, Value>, key: &str) -> io::Result<u64> {
    map.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad_answer(map))
}

fn bad_answer(map: &Map<String, Value>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected answer: {}", Value::Object(map.clone())),
    )
}
