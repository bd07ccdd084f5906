//! A small line editor for a terminal that another thread prints to: what
//! `client chat` uses so that a line arriving from the room never lands in
//! the middle of the line being typed.
//!
//! The terminal is put in non-canonical mode without echo; the editor keeps
//! the line being typed and draws it on the last row after a prompt (`> `).
//! Text printed through the [`Screen`] goes above it: the input row is
//! erased, the text written, the prompt and the line drawn again. The input
//! row never wraps: a line wider than the terminal shows its end. Keys:
//! printable characters, Backspace, Ctrl-U (erase the line), Ctrl-W (erase a
//! word), Enter (send), Ctrl-D on an empty line (end of input), Ctrl-C (quit).
//! Escape sequences (arrows, function keys) are ignored. The terminal's
//! settings are restored when the editor ends, on Ctrl-C, and on SIGTERM or
//! SIGHUP.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// The prompt before the line being typed.
pub const PROMPT: &str = "> ";

/// Erases the row the cursor is on and returns to its start.
const ERASE_ROW: &str = "\r\x1b[K";

/// The terminal's settings before the editor changed them, for the signal
/// handler that restores them.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// What the user did with a key (or several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Enter on this line.
    Line(String),
    /// Ctrl-D on an empty line.
    End,
    /// Ctrl-C.
    Interrupt,
}

/// The terminal's output, shared by the editor and the threads that print:
/// each write keeps the line being typed on the last row.
#[derive(Debug, Clone)]
pub struct Screen(Arc<Mutex<ScreenState>>);

#[derive(Debug)]
struct ScreenState {
    /// The line being typed.
    line: String,
    /// False once the editor ended: printing no longer redraws a prompt.
    editing: bool,
}

impl Screen {
    /// Prints `text` as a line of its own above the line being typed. `text`
    /// must hold no control characters (sanitize it first).
    pub fn print_line(&self, text: &str) -> io::Result<()> {
        let state = self.0.lock();
        let mut out = io::stdout().lock();
        if state.editing {
            write!(out, "{ERASE_ROW}{text}\n{}", input_row(&state.line))?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()
    }

    /// Erases the input row and restores the terminal: after this, output
    /// is plain again.
    pub fn finish(&self) {
        let mut state = self.0.lock();
        if state.editing {
            state.editing = false;
            let mut out = io::stdout().lock();
            let _ = write!(out, "{ERASE_ROW}");
            let _ = out.flush();
            restore();
        }
    }

    fn redraw(&self, state: &ScreenState) -> io::Result<()> {
        let mut out = io::stdout().lock();
        write!(out, "{ERASE_ROW}{}", input_row(&state.line))?;
        out.flush()
    }
}

/// The prompt and as much of the end of `line` as fits on one row.
fn input_row(line: &str) -> String {
    let columns = terminal_columns().saturating_sub(1).max(10);
    let room = columns.saturating_sub(PROMPT.len());
    format!("{PROMPT}{}", visible_tail(line, room))
}

/// The longest end of `line` that takes at most `columns` columns.
pub fn visible_tail(line: &str, columns: usize) -> &str {
    let mut width = 0;
    let mut start = line.len();
    for (at, c) in line.char_indices().rev() {
        width += char_width(c);
        if width > columns {
            break;
        }
        start = at;
    }
    &line[start..]
}

/// The columns a character takes on a terminal: 2 for the wide characters
/// of East Asian scripts and emoji, 0 for combining marks, 1 otherwise. An
/// approximation of Unicode's East Asian Width that covers the common
/// ranges.
pub fn char_width(c: char) -> usize {
    let c = c as u32;
    let combining =
        matches!(c, 0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F);
    let wide = matches!(
        c,
        0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x1F300..=0x1F64F
            | 0x1F900..=0x1F9FF
            | 0x20000..=0x3FFFD
    );
    if combining {
        0
    } else if wide {
        2
    } else {
        1
    }
}

/// The terminal's width in columns (80 when it does not say).
fn terminal_columns() -> usize {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
    let got = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    if got == 0 && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

/// True when standard input and standard output are both terminals: the
/// editor is for people, pipes get plain lines.
pub fn is_interactive() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// The line editor on standard input.
#[derive(Debug)]
pub struct LineEditor {
    screen: Screen,
    keys: KeyDecoder,
    /// What the last keys did, not yet taken by `read`.
    entered: VecDeque<Input>,
}

impl LineEditor {
    /// Puts the terminal in non-canonical mode without echo and draws the
    /// prompt. SIGTERM and SIGHUP restore the terminal before the process
    /// exits.
    pub fn start() -> io::Result<LineEditor> {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is standard input, saved a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = SAVED.set(saved);
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Ctrl-C arrives as a key; these are the signals left.
        let _ = ctrlc::set_handler(|| {
            restore();
            std::process::exit(130);
        });
        let screen = Screen(Arc::new(Mutex::new(ScreenState {
            line: String::new(),
            editing: true,
        })));
        screen.redraw(&screen.0.lock())?;
        Ok(LineEditor {
            screen,
            keys: KeyDecoder::default(),
            entered: VecDeque::new(),
        })
    }

    /// The screen, for other threads to print to.
    pub fn screen(&self) -> Screen {
        self.screen.clone()
    }

    /// Waits for the next line, the end of input or an interrupt. The
    /// entered line stays on the screen after the prompt, as typed. Several
    /// lines pasted at once come one call each, in order.
    pub fn read(&mut self) -> io::Result<Input> {
        let mut stdin = io::stdin().lock();
        let mut buf = [0u8; 256];
        while self.entered.is_empty() {
            let n = match stdin.read(&mut buf) {
                Ok(0) => return Ok(Input::End),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut state = self.screen.0.lock();
            let mut out = io::stdout().lock();
            for key in self.keys.feed(&buf[..n]) {
                if let Some(input) = edit(&mut state.line, key) {
                    if let Input::Line(line) = &input {
                        writeln!(out, "{ERASE_ROW}{PROMPT}{line}")?;
                    }
                    self.entered.push_back(input);
                }
            }
            write!(out, "{ERASE_ROW}{}", input_row(&state.line))?;
            out.flush()?;
        }
        Ok(self.entered.pop_front().expect("not empty"))
    }
}

impl Drop for LineEditor {
    fn drop(&mut self) {
        self.screen.finish();
    }
}

/// Puts the terminal's settings back as they were.
fn restore() {
    if let Some(saved) = SAVED.get() {
        // SAFETY: saved came from tcgetattr on the same descriptor.
        unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, saved) };
    }
}

/// A key, decoded from the terminal's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Backspace.
    Backspace,
    /// Ctrl-U.
    EraseLine,
    /// Ctrl-W.
    EraseWord,
    /// Ctrl-D.
    EndOfInput,
    /// Ctrl-C.
    Interrupt,
}

/// Applies `key` to `line`; what the user did when the key ends the line.
pub fn edit(line: &mut String, key: Key) -> Option<Input> {
    match key {
        Key::Char(c) => line.push(c),
        Key::Backspace => {
            line.pop();
        }
        Key::EraseLine => line.clear(),
        Key::EraseWord => {
            let kept = line.trim_end().rfind(' ').map_or(0, |at| at + 1);
            line.truncate(kept);
        }
        Key::Enter => return Some(Input::Line(std::mem::take(line))),
        Key::EndOfInput if line.is_empty() => return Some(Input::End),
        Key::EndOfInput => {}
        Key::Interrupt => return Some(Input::Interrupt),
    }
    None
}

/// Turns the terminal's bytes into keys: UTF-8 split across reads is put
/// together, escape sequences are skipped, other control bytes dropped.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    pending: Vec<u8>,
    escape: Escape,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Started,
    /// Inside `ESC [` or `ESC O`: up to a final byte.
    Sequence,
}

impl KeyDecoder {
    /// The keys in `bytes`, after what earlier calls left unfinished.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        for &byte in bytes {
            match self.escape {
                Escape::Started => {
                    self.escape = if byte == b'[' || byte == b'O' {
                        Escape::Sequence
                    } else {
                        Escape::None
                    };
                    continue;
                }
                Escape::Sequence => {
                    if (0x40..=0x7e).contains(&byte) {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::None => {}
            }
            let key = match byte {
                0x1b => {
                    self.pending.clear();
                    self.escape = Escape::Started;
                    continue;
                }
                b'\r' | b'\n' => Key::Enter,
                0x7f | 0x08 => Key::Backspace,
                0x15 => Key::EraseLine,
                0x17 => Key::EraseWord,
                0x04 => Key::EndOfInput,
                0x03 => Key::Interrupt,
                b'\t' => Key::Char(' '),
                0x00..=0x1f => continue,
                _ => {
                    self.pending.push(byte);
                    match std::str::from_utf8(&self.pending) {
                        Ok(text) => {
                            let c = text.chars().next().expect("one byte or more");
                            self.pending.clear();
                            if c.is_control() {
                                continue;
                            }
                            Key::Char(c)
                        }
                        Err(e) if e.error_len().is_none() && self.pending.len() < 4 => continue,
                        Err(_) => {
                            self.pending.clear();
                            continue;
                        }
                    }
                }
            };
            keys.push(key);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        KeyDecoder::default().feed(bytes)
    }

    #[test]
    fn bytes_become_keys() {
        assert_eq!(
            keys(b"hi\x7f\r"),
            [Key::Char('h'), Key::Char('i'), Key::Backspace, Key::Enter]
        );
        assert_eq!(keys(b"\x03"), [Key::Interrupt]);
        assert_eq!(
            keys(b"\x04\x15\x17"),
            [Key::EndOfInput, Key::EraseLine, Key::EraseWord]
        );
        // Arrows, a function key and Alt-x are skipped whole.
        assert_eq!(
            keys(b"a\x1b[A\x1b[15~\x1bOPb\x1bxc"),
            [Key::Char('a'), Key::Char('b'), Key::Char('c')]
        );
        assert_eq!(keys(b"\x01\x02\x07"), []);
    }

    #[test]
    fn utf8_split_across_reads_is_put_together() {
        let mut decoder = KeyDecoder::default();
        let bytes = "你".as_bytes();
        assert_eq!(decoder.feed(&bytes[..1]), []);
        assert_eq!(decoder.feed(&bytes[1..]), [Key::Char('你')]);
        assert_eq!(decoder.feed(b"\xff!"), [Key::Char('!')]);
        // C1 controls in UTF-8 are not characters to insert.
        assert_eq!(decoder.feed("\u{9b}x".as_bytes()), [Key::Char('x')]);
    }

    #[test]
    fn editing_keys_change_the_line() {
        let mut line = String::new();
        for c in "hello big world".chars() {
            assert_eq!(edit(&mut line, Key::Char(c)), None);
        }
        edit(&mut line, Key::EraseWord);
        assert_eq!(line, "hello big ");
        edit(&mut line, Key::Backspace);
        assert_eq!(line, "hello big");
        assert_eq!(
            edit(&mut line, Key::EndOfInput),
            None,
            "not on a line with text"
        );
        assert_eq!(
            edit(&mut line, Key::Enter),
            Some(Input::Line("hello big".into()))
        );
        assert_eq!(line, "");
        assert_eq!(edit(&mut line, Key::EndOfInput), Some(Input::End));
        edit(&mut line, Key::Char('x'));
        edit(&mut line, Key::EraseLine);
        assert_eq!(line, "");
        assert_eq!(edit(&mut line, Key::Interrupt), Some(Input::Interrupt));
    }

    #[test]
    fn the_input_row_shows_the_end_of_a_long_line() {
        assert_eq!(visible_tail("hello", 10), "hello");
        assert_eq!(visible_tail("hello world", 5), "world");
        assert_eq!(visible_tail("你好你好", 5), "你好");
        assert_eq!(visible_tail("", 5), "");
        assert_eq!(char_width('a'), 1);
        assert_eq!(char_width('你'), 2);
        assert_eq!(char_width('\u{301}'), 0);
    }

    proptest::proptest! {
        #[test]
        fn the_tail_fits_and_ends_the_line(line in "\\PC{0,40}", columns in 0usize..30) {
            let tail = visible_tail(&line, columns);
            proptest::prop_assert!(line.ends_with(tail));
            proptest::prop_assert!(tail.chars().map(char_width).sum::<usize>() <= columns);
        }

        #[test]
        fn decoded_keys_never_carry_a_control_character(bytes: Vec<u8>) {
            for key in KeyDecoder::default().feed(&bytes) {
                if let Key::Char(c) = key {
                    proptest::prop_assert!(!c.is_control());
                }
            }
        }
    }
}
