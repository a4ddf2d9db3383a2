//! Support for the prefix-engine fuzzers: the engine itself, compiled from the main crate's
//! sources, and slow, obviously-correct models of it to compare against.
//!
//! `src/prefix/` is pure (it needs only `memchr`), so including its files here keeps pyo3,
//! libpython and the C codecs of the main crate out of the instrumented fuzz binaries.

#[allow(dead_code)]
#[path = "../../src/prefix/mod.rs"]
pub mod prefix;

pub use prefix::{Mode, ReplaceError};

/// Start offsets of `needle` in `hay`, scanning left to right without overlaps (the
/// occurrences `bytes.replace` replaces). Empty needles occur nowhere.
pub fn occurrences(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    if needle.is_empty() {
        return found;
    }
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            found.push(i);
            i += needle.len();
        } else {
            i += 1;
        }
    }
    found
}

/// `hay.replace(old, new)`, byte by byte.
pub fn model_text(hay: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    for hit in occurrences(hay, old) {
        out.extend_from_slice(&hay[pos..hit]);
        out.extend_from_slice(new);
        pos = hit + old.len();
    }
    out.extend_from_slice(&hay[pos..]);
    out
}

/// Binary-mode rules, spelled out: a C string runs from an occurrence of `old` to the next
/// NUL (or the end of the data); all its occurrences are replaced; a shrink is padded with
/// NULs right after the string, a growth must find `grow` NULs after the terminator and
/// consumes them. `None` when a growth finds no room.
pub fn model_cstrings(data: &[u8], old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    if old.is_empty() {
        return Some(data.to_vec());
    }
    let mut out = Vec::new();
    let mut emitted = 0; // data[..emitted] is in `out`
    let mut search = 0;
    loop {
        let Some(start) = occurrences(&data[search..], old)
            .first()
            .map(|s| search + s)
        else {
            out.extend_from_slice(&data[emitted..]);
            return Some(out);
        };
        let term = data[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(data.len(), |i| start + i);
        let span = &data[start..term];
        let replaced = model_text(span, old, new);
        out.extend_from_slice(&data[emitted..start]);
        out.extend_from_slice(&replaced);
        if replaced.len() <= span.len() {
            out.resize(out.len() + span.len() - replaced.len(), 0);
            emitted = term;
        } else {
            let grow = replaced.len() - span.len();
            let room = data.get(term..term + grow + 1)?;
            if room.iter().any(|&b| b != 0) {
                return None;
            }
            emitted = term + grow;
        }
        // An `old` holding a NUL ends its own string at once; move on by a byte.
        search = emitted.max(start + 1);
        if search >= data.len() {
            out.extend_from_slice(&data[emitted..]);
            return Some(out);
        }
    }
}

/// Run `data` through [`prefix::replace_window`] in chunks of the given sizes (cycled), with
/// the carry-over the packer's streaming reader uses.
pub fn chunked(
    data: &[u8],
    mode: Mode,
    old: &[u8],
    new: &[u8],
    sizes: &[u8],
) -> Result<Vec<u8>, ReplaceError> {
    let mut out = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut sizes = sizes.iter().map(|&s| usize::from(s) + 1).cycle();
    loop {
        let end = (pos + sizes.next().unwrap_or(data.len() + 1)).min(data.len());
        carry.extend_from_slice(&data[pos..end]);
        pos = end;
        let is_last = pos == data.len();
        let (done, _) = prefix::replace_window(&carry, is_last, mode, old, new, &mut out)?;
        assert!(done <= carry.len(), "finished more than the window");
        carry.drain(..done);
        if is_last {
            assert!(carry.is_empty(), "last window left {} bytes", carry.len());
            return Ok(out);
        }
    }
}

/// The input of both replacement targets: a prefix and its replacement, a file assembled
/// from pieces, and the chunk sizes to stream it in.
#[derive(arbitrary::Arbitrary, Debug)]
pub struct ReplaceInput {
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub pieces: Vec<Piece>,
    pub chunks: Vec<u8>,
}

/// A file to fuzz, built from pieces so that the prefixes and NUL runs the rules are about
/// turn up far more often than in random bytes.
#[derive(arbitrary::Arbitrary, Debug)]
pub enum Piece {
    Old,
    New,
    Nuls(u8),
    Byte(u8),
    Bytes(Vec<u8>),
}

pub fn assemble(pieces: &[Piece], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Old => data.extend_from_slice(old),
            Piece::New => data.extend_from_slice(new),
            Piece::Nuls(n) => data.resize(data.len() + usize::from(n % 16) + 1, 0),
            Piece::Byte(b) => data.push(*b),
            Piece::Bytes(b) => data.extend_from_slice(b),
        }
    }
    data
}
