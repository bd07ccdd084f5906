//! What a target maps to: the built-in page and picture, or a file, an
//! index, a redirect or a listing under the root, never anything outside it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use percent_encoding::{percent_decode_str, percent_encode};

use super::head::Request;
use super::response::{escape_html, Body, Response, HTML, SEGMENT};

/// The built-in picture: a 64×64 PNG of a small globe, made by
/// `make_hello_png.py` beside this file.
static HELLO_PNG: &[u8] = include_bytes!("hello.png");

/// The built-in picture, as served at `/hello.png`.
pub fn hello_png() -> &'static [u8] {
    HELLO_PNG
}

/// Where and how a site is served.
pub(super) struct Site<'a> {
    /// The canonical root, or `None` for the built-in page.
    pub root: Option<&'a Path>,
    /// Whether a directory without `index.html` gets a listing (else 404).
    pub list_directories: bool,
}

impl Site<'_> {
    /// The answer to a well-formed request.
    pub fn respond(&self, request: &Request) -> Response {
        if request.method != "GET" && request.method != "HEAD" {
            return Response::error(405);
        }
        let Some((raw_path, query)) = split_target(&request.target) else {
            return Response::error(400);
        };
        let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
        if decoded.contains(&0) {
            return Response::error(400);
        }
        let segments: Vec<&[u8]> = decoded
            .split(|&b| b == b'/')
            .filter(|s| !s.is_empty() && *s != b".")
            .collect();
        if segments.iter().any(|s| *s == b"..") {
            return Response::error(403);
        }
        let wants_directory = decoded.ends_with(b"/");
        match self.root {
            None => builtin_page(&segments, wants_directory),
            Some(root) => self.serve_file(root, &segments, wants_directory, query),
        }
    }

    /// A file under the root, the index or listing of a directory, or the
    /// reason why not.
    fn serve_file(
        &self,
        root: &Path,
        segments: &[&[u8]],
        wants_directory: bool,
        query: Option<&str>,
    ) -> Response {
        let mut real = match resolve(root, root, segments) {
            Ok(real) => real,
            Err(status) => return Response::error(status),
        };
        let mut name = segments.last().map_or(&b""[..], |s| s).to_vec();
        let is_dir = fs::metadata(&real).map(|m| m.is_dir()).unwrap_or(false);
        if is_dir {
            if !wants_directory {
                return Response::redirect(directory_location(segments, query));
            }
            real = match resolve(root, &real, &[b"index.html"]) {
                Ok(real) => real,
                Err(404) if self.list_directories => return listing(root, &real, segments),
                Err(status) => return Response::error(status),
            };
            name = b"index.html".to_vec();
        } else if wants_directory {
            return Response::error(404);
        }
        // Every symlink on the way was resolved, so O_NOFOLLOW only stops one
        // swapped in since; O_NONBLOCK keeps a FIFO from blocking the open.
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&real)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Response::error(404),
            Err(_) => return Response::error(403),
        };
        let metadata = match file.metadata() {
            Ok(m) if m.is_file() => m,
            _ => return Response::error(403),
        };
        Response {
            status: 200,
            content_type: content_type(&name),
            last_modified: metadata.modified().ok(),
            body: Body::File(file, metadata.len()),
            location: None,
        }
    }
}

/// Where `/dir` is redirected: the path rebuilt from its decoded segments,
/// each percent-encoded, so it starts with a single `/` whatever the target
/// looked like (`//evil.example` must not become a protocol-relative
/// `Location`); the query is kept.
fn directory_location(segments: &[&[u8]], query: Option<&str>) -> String {
    let mut location = String::from("/");
    for segment in segments {
        location.extend(percent_encode(segment, SEGMENT));
        location.push('/');
    }
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// One entry of a directory listing.
struct Entry {
    name: Vec<u8>,
    /// `None` for a directory.
    size: Option<u64>,
}

/// An HTML listing of `dir` (reached by `segments`): its files and
/// directories, sorted by name (case-insensitively first), names escaped for
/// HTML and percent-encoded in links, directories with a trailing slash.
/// Symlinks are listed as what they lead to when that is inside the root,
/// and left out otherwise; other kinds of files (FIFOs, sockets) are left
/// out.
fn listing(root: &Path, dir: &Path, segments: &[&[u8]]) -> Response {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Response::error(status_of(&e)),
    };
    let mut listed = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let metadata = if kind.is_symlink() {
            match fs::canonicalize(entry.path()) {
                Ok(target) if target.starts_with(root) => fs::metadata(target),
                _ => continue,
            }
        } else {
            entry.metadata()
        };
        let Ok(metadata) = metadata else {
            continue;
        };
        let size = if metadata.is_dir() {
            None
        } else if metadata.is_file() {
            Some(metadata.len())
        } else {
            continue;
        };
        listed.push(Entry {
            name: entry.file_name().as_bytes().to_vec(),
            size,
        });
    }
    listed.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
            .then_with(|| a.name.cmp(&b.name))
    });

    let mut path = b"/".to_vec();
    for segment in segments {
        path.extend_from_slice(segment);
        path.push(b'/');
    }
    let title = format!("Index of {}", escape_html(&path));
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th></tr>\n"
    );
    if !segments.is_empty() {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td></tr>\n");
    }
    for entry in &listed {
        let link: String = percent_encode(&entry.name, SEGMENT).collect();
        let shown = escape_html(&entry.name);
        let (slash, size) = match entry.size {
            None => ("/", "-".to_string()),
            Some(size) => ("", size.to_string()),
        };
        page.push_str(&format!(
            "<tr><td><a href=\"{link}{slash}\">{shown}{slash}</a></td><td>{size}</td></tr>\n"
        ));
    }
    page.push_str("</table>\n</body>\n</html>\n");
    Response::bytes(200, HTML, Body::Bytes(page.into_bytes()))
}

/// Walks `segments` down from `start` (a canonical directory inside `root`),
/// one component at a time, and returns the path it leads to, free of
/// symlinks. Every symlink met on the way must lead inside the root, or the
/// answer is 403 (even if later components would come back in); a missing
/// component is 404. Each component costs one `lstat`, plus a `canonicalize`
/// for a symlink.
fn resolve(root: &Path, start: &Path, segments: &[&[u8]]) -> Result<PathBuf, u16> {
    let mut current = start.to_path_buf();
    for segment in segments {
        current.push(OsStr::from_bytes(segment));
        let metadata = fs::symlink_metadata(&current).map_err(|e| status_of(&e))?;
        if metadata.file_type().is_symlink() {
            let target = fs::canonicalize(&current).map_err(|e| status_of(&e))?;
            if !target.starts_with(root) {
                log::info!("refused {}: a symlink out of the root", current.display());
                return Err(403);
            }
            current = target;
        }
    }
    Ok(current)
}

/// The status for a failure to look a path up.
fn status_of(error: &io::Error) -> u16 {
    match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::ELOOP) => 403,
        _ => 404,
    }
}

/// The path and query of a target: origin form (`/a/b?q`) or absolute form
/// (`http://host/a/b?q`); the fragment is dropped. `None` for anything else.
fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    let path = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return None;
        };
        rest.find('/').map_or("/", |slash| &rest[slash..])
    };
    let path = path.split('#').next().unwrap_or("");
    Some(match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    })
}

/// The built-in site: the page and its picture.
fn builtin_page(segments: &[&[u8]], wants_directory: bool) -> Response {
    let page = || Response::bytes(200, HTML, Body::Static(PAGE.as_bytes()));
    match segments {
        [] if wants_directory => page(),
        [b"index.html"] if !wants_directory => page(),
        [b"hello.png"] if !wants_directory => {
            Response::bytes(200, "image/png", Body::Static(HELLO_PNG))
        }
        _ => Response::error(404),
    }
}

/// The media type of a file name, by its extension.
pub fn content_type(name: &[u8]) -> &'static str {
    let extension = name
        .rsplit(|&b| b == b'.')
        .next()
        .filter(|_| name.contains(&b'.'))
        .map(|e| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some(b"html" | b"htm") => HTML,
        Some(b"txt") => "text/plain; charset=utf-8",
        Some(b"css") => "text/css; charset=utf-8",
        Some(b"js" | b"mjs") => "text/javascript; charset=utf-8",
        Some(b"json") => "application/json",
        Some(b"png") => "image/png",
        Some(b"jpg" | b"jpeg") => "image/jpeg",
        Some(b"gif") => "image/gif",
        Some(b"svg") => "image/svg+xml",
        Some(b"ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// The built-in page.
const PAGE: &str = concat!(
    r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hello world</title>
<style>
body { font-family: system-ui, sans-serif; text-align: center; margin: 3em auto; max-width: 40em; }
img { image-rendering: pixelated; width: 128px; height: 128px; }
</style>
</head>
<body>
<h1>hello world</h1>
<p><img id="picture" src="/hello.png" alt="a small globe"></p>
<p id="note">loading the picture…</p>
<p>Served by socketserver "#,
    env!("CARGO_PKG_VERSION"),
    r#". Start it with <code>--root DIR</code> to serve your own files.</p>
<script>
(function () {
  var picture = document.getElementById("picture");
  var note = document.getElementById("note");
  function report() {
    note.textContent = picture.naturalWidth > 0
      ? "picture loaded: " + picture.naturalWidth + "\u00d7" + picture.naturalHeight + " pixels"
      : "the picture did not load";
  }
  if (picture.complete) { report(); }
  else { picture.addEventListener("load", report); picture.addEventListener("error", report); }
})();
</script>
</body>
</html>
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1#f"), Some(("/a/b", Some("x=1"))));
        assert_eq!(split_target("/a#f"), Some(("/a", None)));
        assert_eq!(
            split_target("http://host:8000/p?q"),
            Some(("/p", Some("q")))
        );
        assert_eq!(split_target("HTTPS://host"), Some(("/", None)));
        assert_eq!(split_target("*"), None);
        assert_eq!(split_target("a/b"), None);
    }

    #[test]
    fn redirects_start_with_a_single_slash() {
        assert_eq!(directory_location(&[b"sub"], None), "/sub/");
        assert_eq!(
            directory_location(&[b"evil.example"], Some("x")),
            "/evil.example/?x"
        );
        assert_eq!(directory_location(&[], None), "/");
        assert_eq!(
            directory_location(&[b"a b", b"c:d", b"%/?#"], None),
            "/a%20b/c%3Ad/%25%2F%3F%23/"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"index.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"a.tar.gz"), "application/octet-stream");
        assert_eq!(content_type(b"README"), "application/octet-stream");
        assert_eq!(content_type(b"x.jpeg"), "image/jpeg");
        assert_eq!(content_type(b"x.svg"), "image/svg+xml");
        assert_eq!(content_type(b"favicon.ico"), "image/x-icon");
    }

    #[test]
    fn the_picture_is_a_64_by_64_png() {
        let png = hello_png();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 64);
        assert!(png.ends_with(b"IEND\xae\x42\x60\x82"), "the IEND chunk");
    }
}
