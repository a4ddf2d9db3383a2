//! What `bin/conda-unpack` does to one file, done to its bytes before they are written.
//!
//! A fresh archive's files hold the placeholders recorded when packing; conda-unpack
//! replaces them with the environment's new prefix (`_Relocation.relocated` in
//! `conda_unpack.py`): text files by plain substitution, binaries C string by C string,
//! then the shebang of a recorded script. A file may hold several placeholders; then each
//! position takes the longest prefix that matches there, and the new prefix is matched
//! too and kept, so that an old prefix inside it is never replaced. These are the same
//! byte rules as the Python twin's; `tests/test_prefix_parity.py` feeds both the same
//! cases.

use crate::prefix::{self, Mode, ReplaceError};
use memchr::memmem;

/// One file's records: the prefixes it may hold, how to rewrite them, its shebang.
#[derive(Clone, Debug, Default)]
pub struct Job {
    /// The placeholders recorded for the file; empty for a shebang alone.
    pub olds: Vec<Vec<u8>>,
    pub mode: Option<Mode>,
    /// `(interpreter relative to the environment, options)` of a recorded script.
    pub shebang: Option<(Vec<u8>, Vec<u8>)>,
}

impl Job {
    /// The placeholders that actually change something for `new`: longest first, each
    /// once, none empty or equal to `new` (conda-unpack's `_olds` over its sorted set).
    fn olds_for(&self, new: &[u8]) -> Vec<&[u8]> {
        let mut olds: Vec<&[u8]> = self
            .olds
            .iter()
            .map(Vec::as_slice)
            .filter(|o| !o.is_empty() && *o != new)
            .collect();
        olds.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        olds.dedup();
        olds
    }

    /// Whether the file can be relocated a window at a time (one placeholder, no
    /// shebang): the rest need the whole file.
    pub fn streams(&self, new: &[u8]) -> bool {
        self.shebang.is_none() && self.olds_for(new).len() <= 1
    }
}

/// `data` as conda-unpack leaves it for prefix `new`; None when nothing changes.
pub fn relocate(data: &[u8], job: &Job, new: &[u8]) -> Result<Option<Vec<u8>>, ReplaceError> {
    let mut out: Option<Vec<u8>> = None;
    if let Some(mode) = job.mode {
        let olds = job.olds_for(new);
        out = match (mode, olds.len()) {
            (_, 0) => None,
            (_, 1) => {
                let (o, n) = prefix::replace_all(data, mode, olds[0], new)?;
                (n > 0).then_some(o)
            }
            (Mode::Text, _) => substitute(data, &olds, new),
            (Mode::Binary, _) => replace_cstrings_any(data, &olds, new)?,
        };
    }
    if let Some((exe, options)) = &job.shebang {
        let current = out.as_deref().unwrap_or(data);
        if let Some(fixed) = fix_shebang(current, new, exe, options) {
            out = Some(fixed);
        }
    }
    Ok(out.filter(|o| o.as_slice() != data))
}

/// Leftmost, then longest, non-overlapping matches of `prefixes` (sorted longest first)
/// in `data[start..]`: `(position, index into prefixes)`.
fn matches<'a>(
    data: &'a [u8],
    prefixes: &'a [&'a [u8]],
    start: usize,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let finders: Vec<memmem::Finder<'a>> = prefixes.iter().map(memmem::Finder::new).collect();
    let find = move |f: &memmem::Finder<'_>, from: usize| f.find(&data[from..]).map(|i| from + i);
    let mut next: Vec<Option<usize>> = finders.iter().map(|f| find(f, start)).collect();
    let mut pos = start;
    std::iter::from_fn(move || {
        let mut best: Option<usize> = None;
        for i in 0..finders.len() {
            if let Some(at) = next[i] {
                if at < pos {
                    next[i] = if pos <= data.len() {
                        find(&finders[i], pos)
                    } else {
                        None
                    };
                }
            }
            if let Some(at) = next[i] {
                if best.is_none_or(|b| at < next[b].expect("best has a match")) {
                    best = Some(i);
                }
            }
        }
        let b = best?;
        let at = next[b].expect("best has a match");
        pos = at + prefixes[b].len();
        Some((at, b))
    })
}

/// `olds` (longest first) plus `new`, longest first, `new` placed among its length.
fn with_new<'a>(olds: &[&'a [u8]], new: &'a [u8]) -> (Vec<&'a [u8]>, usize) {
    let mut all: Vec<&[u8]> = olds.to_vec();
    let at = all
        .iter()
        .position(|o| o.len() < new.len())
        .unwrap_or(all.len());
    all.insert(at, new);
    (all, at)
}

/// Every match of `olds` in `data` replaced by `new`, matches of `new` kept; None when
/// there is none.
fn substitute(data: &[u8], olds: &[&[u8]], new: &[u8]) -> Option<Vec<u8>> {
    let (all, new_at) = with_new(olds, new);
    let mut out: Option<Vec<u8>> = None;
    let mut emitted = 0;
    for (pos, i) in matches(data, &all, 0) {
        if i != new_at {
            let o = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
            o.extend_from_slice(&data[emitted..pos]);
            o.extend_from_slice(new);
            emitted = pos + all[i].len();
        }
    }
    let mut o = out?;
    o.extend_from_slice(&data[emitted..]);
    Some(o)
}

/// How much longer `span` gets when its old prefixes become `new`.
fn growth(span: &[u8], olds: &[&[u8]], new: &[u8]) -> isize {
    let (all, new_at) = with_new(olds, new);
    matches(span, &all, 0)
        .filter(|&(_, i)| i != new_at)
        .map(|(_, i)| new.len() as isize - all[i].len() as isize)
        .sum()
}

/// Binary mode for several old prefixes (`replace_cstrings_any`): each C string holding
/// one shrinks or grows by the total change of its matches.
fn replace_cstrings_any(
    data: &[u8],
    olds: &[&[u8]],
    new: &[u8],
) -> Result<Option<Vec<u8>>, ReplaceError> {
    let (all, new_at) = with_new(olds, new);
    let mut out: Option<Vec<u8>> = None;
    let mut emitted = 0;
    let mut pos = 0;
    let size = data.len();
    while pos < size {
        let Some((start, i)) = matches(data, &all, pos).next() else {
            break;
        };
        if i == new_at {
            pos = start + new.len();
            continue;
        }
        let term = memchr::memchr(0, &data[start..]).map_or(size, |t| start + t);
        let span = &data[start..term];
        let grow = growth(span, olds, new);
        if grow > 0 {
            let want = grow as usize + 1;
            let room = &data[term..(term + want).min(size)];
            let nuls = room.iter().take_while(|&&b| b == 0).count();
            if nuls < want {
                return Err(ReplaceError::NoRoom {
                    offset: start,
                    needed: grow as usize,
                    available: nuls.saturating_sub(1),
                });
            }
        }
        let o = out.get_or_insert_with(|| Vec::with_capacity(size));
        o.extend_from_slice(&data[emitted..start]);
        match substitute(span, olds, new) {
            Some(s) => o.extend_from_slice(&s),
            None => o.extend_from_slice(span),
        }
        if grow <= 0 {
            o.resize(o.len() + (-grow) as usize, 0);
            emitted = term;
        } else {
            emitted = term + grow as usize;
        }
        pos = emitted.max(start + 1);
    }
    Ok(out.map(|mut o| {
        o.extend_from_slice(&data[emitted..]);
        o
    }))
}

/// Length of the interpreter line(s) at the start of `data` (a `/bin/sh` trampoline is two).
fn shebang_span(data: &[u8]) -> usize {
    let Some(first) = memchr::memchr(b'\n', data) else {
        return data.len();
    };
    let mut line = &data[..first];
    while let Some(l) = line.strip_suffix(b"\r") {
        line = l;
    }
    if line == b"#!/bin/sh" && data[first + 1..].starts_with(b"'''exec' ") {
        return memchr::memchr(b'\n', &data[first + 1..]).map_or(data.len(), |s| first + 1 + s);
    }
    first
}

/// `data` with its first line(s) running `prefix/exe` with `options`, whatever form they
/// had; None when `data` has no `#!` line.
pub fn fix_shebang(data: &[u8], prefix: &[u8], exe: &[u8], options: &[u8]) -> Option<Vec<u8>> {
    if !data.starts_with(b"#!") {
        return None;
    }
    let mut out = prefix::format_shebang(prefix, exe, options);
    out.extend_from_slice(&data[shebang_span(data)..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(olds: &[&[u8]], mode: Mode) -> Job {
        Job {
            olds: olds.iter().map(|o| o.to_vec()).collect(),
            mode: Some(mode),
            shebang: None,
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_the_new_one_is_kept() {
        let j = job(&[b"/env", b"/env/long"], Mode::Text);
        let out = relocate(b"a /env/long/x /env/y /new2", &j, b"/new2").unwrap();
        assert_eq!(out.unwrap(), b"a /new2/x /new2/y /new2");
        // /env inside the new prefix /env2 is left alone when several are held.
        let j = job(&[b"/env", b"/old"], Mode::Text);
        assert_eq!(
            relocate(b"/env2/x /old/y", &j, b"/env2").unwrap().unwrap(),
            b"/env2/x /env2/y"
        );
        assert!(relocate(b"nothing here", &j, b"/env2").unwrap().is_none());
    }

    #[test]
    fn several_prefixes_in_a_c_string_change_it_by_their_total() {
        let j = job(&[b"/aaaaaaaa", b"/bbbb"], Mode::Binary);
        let data = b"x/aaaaaaaa:/bbbb/lib\0rest\0";
        let out = relocate(data, &j, b"/cc").unwrap().unwrap();
        assert_eq!(out.len(), data.len());
        assert_eq!(&out[..], &b"x/cc:/cc/lib\0\0\0\0\0\0\0\0\0rest\0"[..]);
        // Growing needs NUL padding after the string.
        let j = job(&[b"/a", b"/b"], Mode::Binary);
        assert!(relocate(b"/a:/b\0x", &j, b"/longer").is_err());
        let padded = b"/a:/b\0\0\0\0\0\0\0\0\0\0\0\0\0x";
        let out = relocate(padded, &j, b"/longer").unwrap().unwrap();
        assert_eq!(&out[..], &b"/longer:/longer\0\0\0x"[..]);
    }

    #[test]
    fn shebangs_of_any_earlier_form_are_replaced() {
        let j = Job {
            olds: vec![],
            mode: None,
            shebang: Some((b"bin/python3.11".to_vec(), b"".to_vec())),
        };
        let tramp = b"#!/bin/sh\n'''exec' \"/old/bin/python3.11\" \"$0\" \"$@\" #'''\nprint()\n";
        let out = relocate(tramp, &j, b"/new").unwrap().unwrap();
        assert_eq!(out, b"#!/new/bin/python3.11\nprint()\n");
        assert!(relocate(b"print()\n", &j, b"/new").unwrap().is_none());
        assert!(relocate(b"#!/new/bin/python3.11\n", &j, b"/new")
            .unwrap()
            .is_none());
    }
}
