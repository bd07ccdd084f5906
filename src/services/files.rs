//! files: file transfer with JSON-header messages ("custom protocol 2" of
//! the course).
//!
//! # The conversation
//!
//! Served [`Authenticated`] (with a key), the connection starts with the
//! [handshake](crate::protocol::auth#the-handshake), exactly as in `exec`.
//! Then the client sends requests, each a JSON-header
//! [message](crate::protocol::framing), and gets one answer per request (a
//! JSON-header message too, typed in
//! [`protocol::files`](crate::protocol::files)); `op` defaults to `put`, so
//! the course's client, which sends `{"file_name":...,"file_size":...}` and
//! the bytes and closes without reading the answer, is served as it is.
//!
//! | request | body | answer | body |
//! |---|---|---|---|
//! | `{"op":"put","file_name":"a.jpg","file_size":N,"sha256":"<hex, optional>"}` | N bytes | `{"status":"ok","file_name":"a.jpg","size":N,"sha256":"<hex>"}` | none |
//! | `{"op":"get","file_name":"a.jpg"}` | none | `{"status":"ok","file_name":"a.jpg","file_size":N,"sha256":"<hex>"}` | N bytes |
//! | `{"op":"list"}` | none | `{"status":"ok","files":[{"name":"a.jpg","size":N}]}` | none |
//!
//! Any failure is answered `{"status":"error","error":"<why>"}`, without a
//! body.
//!
//! # Rules
//!
//! - Names are plain file names: empty, `.`, `..`, and names with `/`, `\`,
//!   NUL or a control character (U+0000–U+001F, U+007F) are refused, and so
//!   are names starting with `.socketserver-part-` (the uploads in progress)
//!   and names over [`MAX_NAME_BYTES`] (255) bytes of UTF-8, the limit of a
//!   file name on Linux file systems, before anything is stored. Other
//!   characters are ordinary: look-alikes of the slash such as `∕` (U+2215)
//!   and `／` (U+FF0F) are allowed and stored as they are, since the file
//!   system gives them no meaning (`a∕b` is one file in the directory, not
//!   `b` in `a`), and so are absolute-looking names with them.
//! - A put goes to a temporary file in the same directory, is synced to
//!   disk, checked against `sha256` when one is given (in any case), and
//!   renamed into place: a reader never sees a partial file, an existing file
//!   is replaced atomically, and a transfer cut short leaves nothing behind.
//! - A put refused before its body was read (a bad name, a size over the
//!   [limit](Files::max_size), a header that is not JSON, not an object, or
//!   lacks an integer `file_size`) is answered at once and the connection is
//!   closed, since the body that follows cannot be told from a next request.
//!   A frame over the header limit is answered `frame of N bytes over the
//!   limit L` and closed too. Other errors (a get of a missing file, an
//!   unknown op, a sha256 mismatch) leave the connection open.
//! - `list` shows regular files only, sorted by name, never the temporary
//!   files of uploads in progress; [`prepare`](Files::prepare) removes those
//!   left over by a server that died. A listing is one answer whatever its
//!   size: the header limit bounds the requests the server accepts, not the
//!   answers it sends, which may be as large as the frame limit (16 MiB).
//! - Every request may block (it touches files; a put reads its body and a
//!   get writes the file through the connection, never whole in memory): in
//!   reactor mode requests run on a pool thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::auth::{is_gone, AuthConfig, Authenticated, MAX_DISCARD};
use crate::protocol::digest::{hex, sha256_prefix};
pub use crate::protocol::files::{check_file_name, MAX_NAME_BYTES, TEMP_PREFIX};
use crate::protocol::files::{Answer, Entry, Fetched, Listing, Request, Stored};
use crate::protocol::framing::{body, FrameCodec, FrameError};
use crate::request::{Conn, Framing, FramingError, MessageHandler, Next};

/// The size of the copy buffer.
const CHUNK: usize = 64 * 1024;

/// The files service: stores, serves and lists the files of one directory.
/// See the [module documentation](self) for the protocol.
///
/// ```no_run
/// use socketserver::services::Files;
/// use socketserver::ThreadingTcpServer;
///
/// let files = Files::new("received").max_size(100 << 20);
/// files.prepare()?; // creates the directory, removes stale temporary files
/// let server = ThreadingTcpServer::bind("127.0.0.1:9004", files)?;
/// server.shutdown_on_ctrl_c()?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Files {
    dir: PathBuf,
    max_size: u64,
    codec: FrameCodec,
}

impl Files {
    /// A server for the files of `dir`, without authentication, with a
    /// 1 GiB size limit and default frames (64 KiB request headers).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Files {
            dir: dir.into(),
            max_size: 1 << 30,
            codec: FrameCodec::new(),
        }
    }

    /// This service behind the HMAC handshake of `config`, whose verdict
    /// follows this service's byte order.
    pub fn authenticated(self, config: AuthConfig) -> Authenticated<Files> {
        let endian = self.codec.byte_order();
        Authenticated::new(self, config.endian(endian))
    }

    /// Refuses uploads over `bytes` (default 1 GiB), before storing any byte.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Sets the byte order and the limits of frames: a request header's
    /// limit is the header limit; an answer may be as large as the frame
    /// limit (a long listing).
    pub fn codec(mut self, codec: FrameCodec) -> Self {
        self.codec = codec;
        self
    }

    /// The byte order and the limits of frames.
    pub fn frame_codec(&self) -> FrameCodec {
        self.codec
    }

    /// The directory served.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory ready: creates it if missing and removes the
    /// temporary files that an interrupted server left behind. Returns how
    /// many it removed. Call it before serving (only one server should
    /// serve a directory at a time).
    pub fn prepare(&self) -> io::Result<usize> {
        fs::create_dir_all(&self.dir)?;
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX))
                && entry.file_type()?.is_file()
            {
                fs::remove_file(entry.path())?;
                log::info!("removed the stale upload {}", entry.path().display());
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The files a `list` shows: regular files with UTF-8 names, not
    /// uploads in progress, sorted by name.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) || !entry.file_type()?.is_file() {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => files.push(Entry {
                    name,
                    size: meta.len(),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        files.sort();
        Ok(files)
    }

    /// Sends an answer header, as large as the frame limit allows.
    fn answer<T: Serialize>(&self, conn: &mut Conn<'_>, answer: &Answer<T>) -> io::Result<()> {
        self.codec.write_answer(conn, answer)
    }

    /// Sends an error answer and says how to go on: a refusal that ends the
    /// connection lets the client send on for a while (a refused body), so
    /// that it sees the answer.
    fn refuse(&self, conn: &mut Conn<'_>, why: &str, next: Next) -> io::Result<Next> {
        log::info!("{}: {why}", conn.peer());
        if next == Next::Close {
            conn.set_linger(MAX_DISCARD);
        }
        self.answer(conn, &Answer::<Stored>::refused(why))?;
        Ok(next)
    }

    fn put(
        &self,
        conn: &mut Conn<'_>,
        name: &str,
        size: u64,
        expected: Option<&str>,
    ) -> io::Result<Next> {
        let peer = conn.peer().clone();
        if size > self.max_size {
            let why = format!(
                "file_size {size} is over the limit of {} bytes",
                self.max_size
            );
            return self.refuse(conn, &why, Next::Close);
        }
        let started = Instant::now();
        let mut temp = match TempFile::create(&self.dir) {
            Ok(temp) => temp,
            Err(e) => {
                log::error!(
                    "cannot create a temporary file in {}: {e}",
                    self.dir.display()
                );
                return self.refuse(conn, &format!("cannot store {name}: {e}"), Next::Close);
            }
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; usize::try_from(size).map_or(CHUNK, |size| size.min(CHUNK))];
        let mut incoming = body(&mut *conn, size);
        loop {
            let n = match incoming.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_gone(&e) => {
                    log::info!(
                        "{peer}: upload of {name} cut after {} of {size} bytes ({e}); nothing kept",
                        size - incoming.remaining()
                    );
                    return Err(e); // the temporary file goes with `temp`
                }
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            if let Err(e) = temp.file.write_all(&buf[..n]) {
                log::error!("cannot write {}: {e}", temp.path.display());
                drop(temp);
                return self.refuse(conn, &format!("cannot store {name}: {e}"), Next::Close);
            }
        }
        let digest = hex(&hasher.finalize());
        if let Some(expected) = expected {
            if expected != digest {
                drop(temp);
                let why = format!(
                    "sha256 mismatch for {name}: expected {expected}, got {digest}; not stored"
                );
                return self.refuse(conn, &why, Next::Continue);
            }
        }
        if let Err(e) = temp.commit(&self.dir.join(name)) {
            log::error!("cannot store {name} in {}: {e}", self.dir.display());
            return self.refuse(conn, &format!("cannot store {name}: {e}"), Next::Continue);
        }
        log::info!(
            "{peer}: stored {name} ({size} bytes, sha256 {digest}) in {:.3} s",
            started.elapsed().as_secs_f64()
        );
        let stored = Stored {
            file_name: name.to_string(),
            size,
            sha256: digest,
        };
        // The course's client closes without reading: a failure to send
        // this is a client gone, for the loop to see.
        self.answer(conn, &Answer::Ok(stored))?;
        Ok(Next::Continue)
    }

    fn get(&self, conn: &mut Conn<'_>, name: &str) -> io::Result<Next> {
        let path = self.dir.join(name);
        // What `list` does not show (symbolic links, directories, FIFOs) is
        // not served either; O_NONBLOCK keeps a FIFO from blocking the open.
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .and_then(|file| {
                let meta = file.metadata()?;
                if meta.is_file() {
                    Ok((file, meta.len()))
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "not a regular file",
                    ))
                }
            });
        let (mut file, size) = match opened {
            Ok(opened) => opened,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                return self.refuse(conn, &format!("no such file: {name}"), Next::Continue)
            }
            Err(e) => {
                return self.refuse(conn, &format!("cannot read {name}: {e}"), Next::Continue)
            }
        };
        // The file is never written in place (puts rename over it), so the
        // open file stays as it was measured.
        let (hashed, digest) = sha256_prefix(&mut file, size)?;
        if hashed != size {
            return self.refuse(
                conn,
                &format!("cannot read {name}: it changed"),
                Next::Continue,
            );
        }
        file.rewind()?;
        let fetched = Fetched {
            file_name: name.to_string(),
            file_size: size,
            sha256: digest,
        };
        self.answer(conn, &Answer::Ok(fetched))?;
        // Streamed: at most a chunk or two is in memory at once.
        let mut source = (&mut file).take(size);
        let mut buf = vec![0u8; usize::try_from(size).map_or(CHUNK, |size| size.min(CHUNK))];
        let mut sent = 0u64;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            conn.write_all(&buf[..n])?;
            sent += n as u64;
        }
        if sent < size {
            log::warn!(
                "{}: {name} shrank while being sent ({sent} of {size} bytes); closing",
                conn.peer()
            );
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} shrank while being sent"),
            ));
        }
        log::info!("{}: sent {name} ({size} bytes)", conn.peer());
        Ok(Next::Continue)
    }

    fn list_answer(&self, conn: &mut Conn<'_>) -> io::Result<Next> {
        let files = match self.list() {
            Ok(files) => files,
            Err(e) => return self.refuse(conn, &format!("cannot list: {e}"), Next::Continue),
        };
        let count = files.len();
        match self.answer(conn, &Answer::Ok(Listing { files })) {
            Ok(()) => Ok(Next::Continue),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                let why = match FrameError::from_io(&e) {
                    Some(FrameError::TooLarge { len, limit }) => format!(
                        "cannot list: the listing of {count} files is {len} bytes, over the \
                         frame limit {limit}"
                    ),
                    _ => format!("cannot list: {e}"),
                };
                self.refuse(conn, &why, Next::Continue)
            }
            Err(e) => Err(e),
        }
    }
}

impl MessageHandler for Files {
    type Session = ();

    /// A request is a JSON header of at most the header limit.
    fn framing(&self, _: &()) -> Framing {
        self.codec.framing(self.codec.header_limit())
    }

    /// Every request touches files; a put reads its body, a get writes the
    /// file, both through the connection.
    fn blocking(&self, _: &()) -> bool {
        true
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), header: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        match Request::parse(header) {
            Ok(Request::Put {
                file_name,
                file_size,
                sha256,
            }) => self.put(conn, &file_name, file_size, sha256.as_deref()),
            Ok(Request::Get { file_name }) => self.get(conn, &file_name),
            Ok(Request::List) => self.list_answer(conn),
            Err(bad) => {
                let next = if bad.closes {
                    Next::Close
                } else {
                    Next::Continue
                };
                self.refuse(conn, &bad.reason, next)
            }
        }
    }

    /// A header over the limit is answered (rule 10), then the connection
    /// closes; one cut short just ends it.
    fn on_bad_message(
        &self,
        _: &mut (),
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        match error {
            FramingError::FrameTooLarge { .. } => {
                self.refuse(conn, &error.to_string(), Next::Close)?;
                Ok(())
            }
            _ => {
                log::debug!("{}: {error}", conn.peer());
                Ok(())
            }
        }
    }
}

/// An upload in progress: a hidden file in the target directory, removed on
/// drop unless committed.
struct TempFile {
    file: File,
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    fn create(dir: &Path) -> io::Result<TempFile> {
        loop {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random)
                .map_err(|e| io::Error::other(format!("no random bytes: {e}")))?;
            let path = dir.join(format!("{TEMP_PREFIX}{}", hex(&random)));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        path,
                        committed: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Syncs the data and renames the file to `target`, replacing it.
    fn commit(mut self, target: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.path, target)?;
        self.committed = true;
        // Make the rename itself durable (best effort: not every system
        // syncs directories).
        if let Some(dir) = target.parent() {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = fs::remove_file(&self.path) {
                log::error!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_creates_the_directory_and_removes_stale_uploads() {
        let dir =
            std::env::temp_dir().join(format!("socketserver-files-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let files = Files::new(dir.join("sub"));
        assert_eq!(files.prepare().unwrap(), 0);
        fs::write(
            dir.join("sub").join(format!("{TEMP_PREFIX}0123")),
            b"partial",
        )
        .unwrap();
        fs::write(dir.join("sub").join("kept"), b"kept").unwrap();
        fs::create_dir(dir.join("sub").join("a directory")).unwrap();
        assert_eq!(files.prepare().unwrap(), 1);
        assert_eq!(
            files.list().unwrap(),
            [Entry {
                name: "kept".to_string(),
                size: 4
            }]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
