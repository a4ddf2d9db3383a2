//! The prefix engine: every byte-level rule for moving an environment between paths.
//!
//! conda-build records, per file, the placeholder it built with and whether the file is
//! `text` (plain substitution, the length may change) or `binary` (NUL-terminated C strings
//! rewritten in place, the file length never changes). Installing replaces placeholder ->
//! prefix; packing replaces prefix -> placeholder ("restore"); unpacking replaces
//! placeholder -> new prefix. All three are the same two operations run with other
//! arguments, so there is one implementation of each, shared by every caller.
//!
//! Functions work on a *window* of the file and report how much of it they could finish,
//! so the same code handles a whole small file (one call, `is_last = true`) and a large one
//! streamed in chunks (the unfinished tail is carried into the next call).

mod cstring;
mod shebang;
mod text;

pub use cstring::{replace_cstrings, replace_cstrings_in_place, undo_in_place, Undo};
pub use shebang::{env_shebang, format_shebang, parse_shebang, Shebang, SHEBANG_LIMIT};
pub use text::{replace_text, replaced_len};

use std::fmt;

/// How a file's prefix occurrences are rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Text,
    Binary,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "text" => Some(Mode::Text),
            "binary" => Some(Mode::Binary),
            _ => None,
        }
    }
}

/// Why a replacement could not be done. Nothing has been emitted for the failing span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceError {
    /// A binary string would grow past the NUL padding that follows it.
    NoRoom {
        /// Offset of the C string in the window.
        offset: usize,
        /// Bytes of padding the growth needs.
        needed: usize,
        /// Bytes of padding actually present.
        available: usize,
    },
    /// A C string holding the prefix runs on for longer than any real string does,
    /// which means the bytes are not the C string the rules assume.
    SpanTooLong { offset: usize },
}

impl fmt::Display for ReplaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplaceError::NoRoom {
                offset,
                needed,
                available,
            } => write!(
                f,
                "string at offset {offset} needs {needed} bytes of NUL padding but has {available}"
            ),
            ReplaceError::SpanTooLong { offset } => {
                write!(
                    f,
                    "string at offset {offset} has no NUL terminator within {MAX_SPAN} bytes"
                )
            }
        }
    }
}

impl std::error::Error for ReplaceError {}

/// Longest C string (from the first prefix occurrence to its NUL) we accept. Real ones are
/// paths and search lists of a few KiB at most; the bound keeps carried windows small.
pub const MAX_SPAN: usize = 1 << 20;

/// Replace `old` with `new` in `window` according to `mode`, appending the result to `out`.
///
/// Returns how many bytes of `window` were finished. Unless `is_last`, a caller streaming a
/// file must prepend the unfinished rest to the next chunk. Returns the number of
/// replacements made alongside.
pub fn replace_window(
    window: &[u8],
    is_last: bool,
    mode: Mode,
    old: &[u8],
    new: &[u8],
    out: &mut Vec<u8>,
) -> Result<(usize, usize), ReplaceError> {
    match mode {
        Mode::Text => Ok(replace_text(window, is_last, old, new, out)),
        Mode::Binary => replace_cstrings(window, is_last, old, new, out),
    }
}

/// Replace throughout a whole in-memory buffer.
pub fn replace_all(
    data: &[u8],
    mode: Mode,
    old: &[u8],
    new: &[u8],
) -> Result<(Vec<u8>, usize), ReplaceError> {
    let mut out = Vec::with_capacity(data.len());
    let (_, n) = replace_window(data, true, mode, old, new, &mut out)?;
    Ok((out, n))
}

/// Whether `data` is binary by conda-build's rule: it holds a NUL byte.
pub fn is_binary(data: &[u8]) -> bool {
    memchr::memchr(0, data).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replacing in chunks of every size gives the same bytes as one call.
    fn chunked(data: &[u8], mode: Mode, old: &[u8], new: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut carry: Vec<u8> = Vec::new();
        let mut pos = 0;
        loop {
            let end = (pos + chunk).min(data.len());
            carry.extend_from_slice(&data[pos..end]);
            pos = end;
            let last = pos == data.len();
            let (done, _) = replace_window(&carry, last, mode, old, new, &mut out).unwrap();
            carry.drain(..done);
            if last {
                assert!(carry.is_empty());
                return out;
            }
        }
    }

    #[test]
    fn chunking_is_invisible() {
        let ph = b"/opt/placeholder_placeholder";
        let mut data = Vec::new();
        for i in 0..50 {
            data.extend_from_slice(b"xx");
            data.extend_from_slice(ph);
            data.extend_from_slice(format!("/lib{i}:").as_bytes());
            data.extend_from_slice(ph);
            data.extend_from_slice(
                b"/bin\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            );
        }
        for mode in [Mode::Text, Mode::Binary] {
            let whole = replace_all(&data, mode, ph, b"/new").unwrap().0;
            for chunk in [1, 2, 3, 7, 31, 64, 1000] {
                assert_eq!(
                    chunked(&data, mode, ph, b"/new", chunk),
                    whole,
                    "{mode:?} {chunk}"
                );
            }
        }
    }
}
