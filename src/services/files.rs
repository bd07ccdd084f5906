//! files: file transfer with JSON-header messages ("custom protocol 2" of
//! the course).
//!
//! # The conversation
//!
//! With a [key](Files::key), the connection starts with the
//! [`auth`](crate::protocol::auth#the-handshake) handshake, exactly as in `exec`. Then the client
//! sends requests, each a JSON-header [message](crate::protocol::framing), and gets one
//! answer per request (a JSON-header message too); `op` defaults to `put`, so
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
//!   left over by a server that died.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::wire::{authenticate, is_gone};
use crate::protocol::auth::{FailureLimit, Key};
use crate::protocol::digest::{hex, is_sha256_hex, sha256_prefix};
use crate::protocol::framing::{body, FrameError, Framing};
use crate::{Address, RequestHandler, StreamRequest};

/// The name prefix of the temporary files of uploads in progress.
pub const TEMP_PREFIX: &str = ".socketserver-part-";

/// The longest file name, in bytes of UTF-8: Linux file systems' `NAME_MAX`.
pub const MAX_NAME_BYTES: usize = 255;

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
    key: Option<Key>,
    framing: Framing,
    auth_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    auth_limit: FailureLimit,
}

/// What a request asks for, once its header is understood.
enum Request {
    Put {
        name: String,
        size: u64,
        sha256: Option<String>,
    },
    Get {
        name: String,
    },
    List,
}

/// What to do after an answer.
enum Next {
    /// Read the next request.
    Continue,
    /// Drain and close (the stream is out of step, or the peer is gone).
    Close,
    /// Close at once (nothing more can be sent).
    Gone,
}

/// Checks a file name from a request: a plain name in the directory, not a
/// path and not one of the temporary files. The error says why.
///
/// ```
/// use socketserver::services::files::check_file_name;
/// assert!(check_file_name("photo.jpg").is_ok());
/// assert!(check_file_name("../etc/passwd").is_err());
/// assert!(check_file_name("a\\b").is_err());
/// ```
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("refused file name {name:?}"));
    }
    if name.contains(['/', '\\']) {
        return Err(format!("refused file name {name:?}: a path separator"));
    }
    if name.chars().any(|c| c.is_ascii_control()) {
        return Err(format!("refused file name {name:?}: a control character"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "refused file name of {} bytes: the limit is {MAX_NAME_BYTES} bytes",
            name.len()
        ));
    }
    if name.starts_with(TEMP_PREFIX) {
        return Err(format!(
            "refused file name {name:?}: reserved for uploads in progress"
        ));
    }
    Ok(())
}

impl Files {
    /// A server for the files of `dir`, without authentication, with a
    /// 1 GiB size limit, default framing (64 KiB headers), 10 s for a
    /// handshake and no idle timeout.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Files {
            dir: dir.into(),
            max_size: 1 << 30,
            key: None,
            framing: Framing::new(),
            auth_timeout: Some(Duration::from_secs(10)),
            idle_timeout: None,
            auth_limit: FailureLimit::default(),
        }
    }

    /// Refuses uploads over `bytes` (default 1 GiB), before storing any byte.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Requires the HMAC handshake with `key` before any request (`None`:
    /// no authentication, the default).
    pub fn key(mut self, key: Option<Key>) -> Self {
        self.key = key;
        self
    }

    /// Sets the byte order and the limits of frames (a header's limit is the
    /// header limit).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Gives a client at most `timeout` to answer the challenge (default
    /// 10 s; `None`: no limit).
    pub fn auth_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// The read timeout between requests after the handshake; set it to the
    /// server's [`idle_timeout`](crate::Options::idle_timeout) (default none).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the limit on failed handshakes per client address, with a key
    /// (default: 5 failures, then refused for 60 s; [`FailureLimit::off`]
    /// for none).
    pub fn auth_limit(mut self, limit: FailureLimit) -> Self {
        self.auth_limit = limit;
        self
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
    pub fn list(&self) -> io::Result<Vec<(String, u64)>> {
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
                Ok(meta) => files.push((name, meta.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        files.sort();
        Ok(files)
    }

    fn send(&self, req: &mut StreamRequest, header: &Value) -> io::Result<()> {
        self.framing.write_header(req, header)
    }

    fn send_error(&self, req: &mut StreamRequest, why: &str) -> io::Result<()> {
        self.send(req, &json!({"status": "error", "error": why}))
    }

    /// Sends an error answer and says how to go on; a client gone meanwhile
    /// ends the conversation.
    fn refuse(
        &self,
        req: &mut StreamRequest,
        peer: &Address,
        why: &str,
        next: Next,
    ) -> io::Result<Next> {
        log::info!("{peer}: {why}");
        match self.send_error(req, why) {
            Ok(()) => Ok(next),
            Err(e) if is_gone(&e) => Ok(Next::Gone),
            Err(e) => Err(e),
        }
    }

    /// Understands a header, or says why not and whether the connection can
    /// go on.
    fn parse(header: &Map<String, Value>) -> Result<Request, (String, Next)> {
        let op = match header.get("op") {
            None | Some(Value::Null) => "put",
            Some(Value::String(op)) => op.as_str(),
            Some(other) => {
                return Err((format!("op must be a string, not {other}"), Next::Continue))
            }
        };
        let name = || match header.get("file_name") {
            Some(Value::String(name)) => check_file_name(name).map(|()| name.clone()),
            Some(_) => Err("file_name must be a string".to_string()),
            None => Err("missing file_name".to_string()),
        };
        match op {
            "put" => {
                // Until the header is understood the body cannot be skipped:
                // every refusal here closes the connection.
                let name = name().map_err(|why| (why, Next::Close))?;
                let size = match header.get("file_size") {
                    Some(size) => size.as_u64().ok_or_else(|| {
                        (
                            format!("file_size must be a non-negative integer, not {size}"),
                            Next::Close,
                        )
                    })?,
                    None => return Err(("missing file_size".to_string(), Next::Close)),
                };
                let sha256 = match header.get("sha256") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(hex)) if is_sha256_hex(hex) => {
                        Some(hex.to_ascii_lowercase())
                    }
                    Some(other) => {
                        return Err((
                            format!("sha256 must be 64 hex digits, not {other}"),
                            Next::Close,
                        ))
                    }
                };
                Ok(Request::Put { name, size, sha256 })
            }
            "get" => Ok(Request::Get {
                name: name().map_err(|why| (why, Next::Continue))?,
            }),
            "list" => Ok(Request::List),
            other => Err((format!("unknown op: {other}"), Next::Continue)),
        }
    }

    fn put(
        &self,
        req: &mut StreamRequest,
        peer: &Address,
        name: &str,
        size: u64,
        expected: Option<&str>,
    ) -> io::Result<Next> {
        if size > self.max_size {
            let why = format!(
                "file_size {size} is over the limit of {} bytes",
                self.max_size
            );
            return self.refuse(req, peer, &why, Next::Close);
        }
        let started = Instant::now();
        let mut temp = match TempFile::create(&self.dir) {
            Ok(temp) => temp,
            Err(e) => {
                log::error!(
                    "cannot create a temporary file in {}: {e}",
                    self.dir.display()
                );
                return self.refuse(req, peer, &format!("cannot store {name}: {e}"), Next::Close);
            }
        };
        let mut hasher = Sha256::new();
        let mut incoming = body(&mut *req, size);
        let mut buf = vec![0u8; usize::try_from(size).map_or(CHUNK, |size| size.min(CHUNK))];
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
                    return Ok(Next::Gone); // the temporary file goes with `temp`
                }
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            if let Err(e) = temp.file.write_all(&buf[..n]) {
                log::error!("cannot write {}: {e}", temp.path.display());
                drop(temp);
                return self.refuse(req, peer, &format!("cannot store {name}: {e}"), Next::Close);
            }
        }
        let digest = hex(&hasher.finalize());
        if let Some(expected) = expected {
            if expected != digest {
                drop(temp);
                let why = format!(
                    "sha256 mismatch for {name}: expected {expected}, got {digest}; not stored"
                );
                return self.refuse(req, peer, &why, Next::Continue);
            }
        }
        if let Err(e) = temp.commit(&self.dir.join(name)) {
            log::error!("cannot store {name} in {}: {e}", self.dir.display());
            return self.refuse(
                req,
                peer,
                &format!("cannot store {name}: {e}"),
                Next::Continue,
            );
        }
        log::info!(
            "{peer}: stored {name} ({size} bytes, sha256 {digest}) in {:.3} s",
            started.elapsed().as_secs_f64()
        );
        let answer = json!({"status": "ok", "file_name": name, "size": size, "sha256": digest});
        match self.send(req, &answer) {
            Ok(()) => Ok(Next::Continue),
            // The course's client closes without reading: normal.
            Err(e) if is_gone(&e) => Ok(Next::Gone),
            Err(e) => Err(e),
        }
    }

    fn get(&self, req: &mut StreamRequest, peer: &Address, name: &str) -> io::Result<Next> {
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
                return self.refuse(req, peer, &format!("no such file: {name}"), Next::Continue)
            }
            Err(e) => {
                return self.refuse(
                    req,
                    peer,
                    &format!("cannot read {name}: {e}"),
                    Next::Continue,
                )
            }
        };
        // The file is never written in place (puts rename over it), so the
        // open file stays as it was measured.
        let (hashed, digest) = sha256_prefix(&mut file, size)?;
        if hashed != size {
            return self.refuse(
                req,
                peer,
                &format!("cannot read {name}: it changed"),
                Next::Continue,
            );
        }
        file.rewind()?;
        let header =
            json!({"status": "ok", "file_name": name, "file_size": size, "sha256": digest});
        let sent = self
            .send(req, &header)
            .and_then(|()| io::copy(&mut (&mut file).take(size), &mut *req));
        match sent {
            Ok(n) if n == size => {
                log::info!("{peer}: sent {name} ({size} bytes)");
                Ok(Next::Continue)
            }
            Ok(n) => {
                log::warn!("{peer}: {name} shrank while being sent ({n} of {size} bytes); closing");
                Ok(Next::Gone)
            }
            Err(e) if is_gone(&e) => Ok(Next::Gone),
            Err(e) => Err(e),
        }
    }

    fn list_answer(&self, req: &mut StreamRequest, peer: &Address) -> io::Result<Next> {
        let files = match self.list() {
            Ok(files) => files,
            Err(e) => return self.refuse(req, peer, &format!("cannot list: {e}"), Next::Continue),
        };
        let files: Vec<Value> = files
            .into_iter()
            .map(|(name, size)| json!({"name": name, "size": size}))
            .collect();
        match self.send(req, &json!({"status": "ok", "files": files})) {
            Ok(()) => Ok(Next::Continue),
            Err(e) if is_gone(&e) => Ok(Next::Gone),
            Err(e) => Err(e),
        }
    }
}

impl RequestHandler<StreamRequest> for Files {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let peer = req.peer_addr().clone();
        if let Some(key) = &self.key {
            if !authenticate(
                req,
                &peer,
                key,
                &self.framing,
                &self.auth_limit,
                self.auth_timeout,
                self.idle_timeout,
            )? {
                return Ok(());
            }
        }
        let mut scratch = Vec::new();
        loop {
            let header = match self.framing.read_header(&mut *req, &mut scratch) {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return match FrameError::from_io(&e) {
                        Some(error) if !error.is_truncation() => {
                            // Over the limit, not UTF-8, not JSON, not an object.
                            if let Next::Close =
                                self.refuse(req, &peer, &error.to_string(), Next::Close)?
                            {
                                req.close_after_answer(super::wire::MAX_DISCARD);
                            }
                            Ok(())
                        }
                        _ if is_gone(&e) => {
                            log::debug!("{peer}: gone: {e}");
                            Ok(())
                        }
                        _ => Err(e),
                    };
                }
            };
            let next = match Self::parse(&header) {
                Ok(Request::Put { name, size, sha256 }) => {
                    self.put(req, &peer, &name, size, sha256.as_deref())?
                }
                Ok(Request::Get { name }) => self.get(req, &peer, &name)?,
                Ok(Request::List) => self.list_answer(req, &peer)?,
                Err((why, next)) => self.refuse(req, &peer, &why, next)?,
            };
            match next {
                Next::Continue => {}
                Next::Close => {
                    req.close_after_answer(super::wire::MAX_DISCARD);
                    return Ok(());
                }
                Next::Gone => return Ok(()),
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
    fn names() {
        let longest = "é".repeat(MAX_NAME_BYTES / 2) + "x";
        assert_eq!(longest.len(), MAX_NAME_BYTES);
        for good in [
            "a.jpg",
            "a b",
            ".hidden",
            "é",
            "...",
            "a..b",
            "a\u{2215}b",
            "\u{ff0f}etc\u{ff0f}passwd",
            "\u{2024}\u{2024}",
            longest.as_str(),
        ] {
            assert!(check_file_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc",
            "a\\b",
            "a\0b",
            "a\nb",
            "\u{1f}",
            "a\u{7f}",
            ".socketserver-part-0011",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        let too_long = longest + "y";
        assert_eq!(
            check_file_name(&too_long).unwrap_err(),
            "refused file name of 256 bytes: the limit is 255 bytes"
        );
    }

    #[test]
    fn headers_are_understood_or_refused_with_the_right_follow_up() {
        let parse = |text: &str| {
            Files::parse(
                serde_json::from_str::<Value>(text)
                    .unwrap()
                    .as_object()
                    .unwrap(),
            )
        };
        assert!(matches!(
            parse(r#"{"file_name":"a","file_size":3}"#),
            Ok(Request::Put {
                size: 3,
                sha256: None,
                ..
            })
        ));
        let sha = "AB".repeat(32);
        match parse(&format!(
            r#"{{"op":"put","file_name":"a","file_size":0,"sha256":"{sha}"}}"#
        )) {
            Ok(Request::Put {
                sha256: Some(s), ..
            }) => assert_eq!(s, "ab".repeat(32)),
            _ => panic!("a put with a digest"),
        }
        assert!(matches!(parse(r#"{"op":"list"}"#), Ok(Request::List)));
        assert!(matches!(
            parse(r#"{"op":"get","file_name":"x"}"#),
            Ok(Request::Get { .. })
        ));
        for closing in [
            r#"{"file_name":"a"}"#,
            r#"{"file_name":"a","file_size":"3"}"#,
            r#"{"file_name":"a","file_size":-1}"#,
            r#"{"file_name":"a","file_size":1.5}"#,
            r#"{"file_name":"../a","file_size":1}"#,
            r#"{"file_size":1}"#,
            r#"{"file_name":"a","file_size":1,"sha256":"xyz"}"#,
        ] {
            assert!(matches!(parse(closing), Err((_, Next::Close))), "{closing}");
        }
        for staying in [
            r#"{"op":"get","file_name":".."}"#,
            r#"{"op":"delete","file_name":"a"}"#,
            r#"{"op":7}"#,
        ] {
            assert!(
                matches!(parse(staying), Err((_, Next::Continue))),
                "{staying}"
            );
        }
    }

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
        assert_eq!(files.list().unwrap(), [("kept".to_string(), 4)]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
