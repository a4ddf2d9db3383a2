//! Binary-mode replacement: rewrite NUL-terminated C strings without moving any other byte.
//!
//! A C string holding the prefix runs from the first occurrence to the next NUL. Every
//! occurrence inside it is replaced; a shorter result is followed by as many NULs as it
//! shrank (so later offsets stay put), and a longer result consumes NULs that follow the
//! terminator — the padding an earlier shrink left behind. Growth without that padding is
//! refused rather than overwriting whatever follows the string.

use super::{ReplaceError, MAX_SPAN};
use memchr::{memchr, memmem};

/// Replace `old` with `new` in every C string of `window`, appending to `out`.
///
/// Returns `(finished, replacements)`; see [`super::replace_window`] for windows.
pub fn replace_cstrings(
    window: &[u8],
    is_last: bool,
    old: &[u8],
    new: &[u8],
    out: &mut Vec<u8>,
) -> Result<(usize, usize), ReplaceError> {
    if old.is_empty() {
        out.extend_from_slice(window);
        return Ok((window.len(), 0));
    }
    let finder = memmem::Finder::new(old);
    let mut emitted = 0; // window[..emitted] is already in `out`
    let mut search = 0;
    let mut count = 0;
    while let Some(rel) = finder.find(&window[search..]) {
        let start = search + rel;
        let term = match memchr(0, &window[start..]) {
            Some(i) => start + i,
            None if is_last => window.len(),
            None => return hold_back(window, emitted, start, out, count),
        };
        let span = &window[start..term];
        let hits = memmem::find_iter(span, old).count();
        if new.len() <= old.len() {
            let shrink = hits * (old.len() - new.len());
            out.extend_from_slice(&window[emitted..start]);
            push_replaced(span, &finder, old, new, out);
            out.resize(out.len() + shrink, 0);
            emitted = term;
        } else {
            let grow = hits * (new.len() - old.len());
            if term + 1 + grow > window.len() && !is_last {
                return hold_back(window, emitted, start, out, count);
            }
            room_to_grow(window, start, term, grow)?;
            out.extend_from_slice(&window[emitted..start]);
            push_replaced(span, &finder, old, new, out);
            // The padding is now part of the string; resume at the NUL that terminates it.
            emitted = term + grow;
        }
        count += hits;
        search = emitted.max(start + 1);
        if search >= window.len() {
            break;
        }
    }
    let end = if is_last {
        window.len()
    } else {
        window.len().saturating_sub(old.len() - 1).max(emitted)
    };
    out.extend_from_slice(&window[emitted..end]);
    Ok((end, count))
}

/// Whether the string at `start..term` can grow by `grow` bytes: its terminator plus
/// `grow` NULs after it must be there (within `data`, which the caller knows is complete
/// up to that point).
fn room_to_grow(data: &[u8], start: usize, term: usize, grow: usize) -> Result<(), ReplaceError> {
    let room_end = (term + 1 + grow).min(data.len());
    let nuls = data[term.min(data.len())..room_end]
        .iter()
        .take_while(|&&b| b == 0)
        .count();
    if nuls < grow + 1 {
        return Err(ReplaceError::NoRoom {
            offset: start,
            needed: grow,
            available: nuls.saturating_sub(1),
        });
    }
    Ok(())
}

/// What [`replace_cstrings_in_place`] overwrote: each rewritten region's offset and
/// former bytes, so that the caller can put them back.
pub type Undo = Vec<(usize, Vec<u8>)>;

/// [`replace_cstrings`] on a whole buffer, in the buffer itself: strings keep their
/// length, so only those holding `old` are rewritten and every other byte stays where it
/// is (no copy of a many-megabyte binary to change a few strings). Returns the number of
/// replacements. On error nothing has been changed.
pub fn replace_cstrings_in_place(
    data: &mut [u8],
    old: &[u8],
    new: &[u8],
    undo: &mut Undo,
) -> Result<usize, ReplaceError> {
    if old.is_empty() {
        return Ok(0);
    }
    let finder = memmem::Finder::new(old);
    let mut scratch = Vec::new();
    let mut search = 0;
    let mut count = 0;
    let undone_from = undo.len();
    while let Some(rel) = finder.find(&data[search..]) {
        let start = search + rel;
        let term = memchr(0, &data[start..]).map_or(data.len(), |i| start + i);
        let hits = memmem::find_iter(&data[start..term], old).count();
        scratch.clear();
        push_replaced(&data[start..term], &finder, old, new, &mut scratch);
        let end = if new.len() <= old.len() {
            term
        } else {
            let grow = hits * (new.len() - old.len());
            if let Err(e) = room_to_grow(data, start, term, grow) {
                undo_in_place(data, undo, undone_from);
                return Err(e);
            }
            term + grow
        };
        undo.push((start, data[start..end].to_vec()));
        // A shorter string is followed by the NULs it gave up, before its terminator.
        data[start..start + scratch.len()].copy_from_slice(&scratch);
        data[start + scratch.len()..end].fill(0);
        count += hits;
        search = end.max(start + 1);
        if search >= data.len() {
            break;
        }
    }
    Ok(count)
}

/// Put back what [`replace_cstrings_in_place`] changed since `undo` held `from` entries.
pub fn undo_in_place(data: &mut [u8], undo: &mut Undo, from: usize) {
    for (at, bytes) in undo.drain(from..).rev() {
        data[at..at + bytes.len()].copy_from_slice(&bytes);
    }
}

/// Stop before an occurrence whose string (or padding) continues past the window.
fn hold_back(
    window: &[u8],
    emitted: usize,
    start: usize,
    out: &mut Vec<u8>,
    count: usize,
) -> Result<(usize, usize), ReplaceError> {
    if window.len() - start > MAX_SPAN {
        return Err(ReplaceError::SpanTooLong { offset: start });
    }
    out.extend_from_slice(&window[emitted..start]);
    Ok((start, count))
}

fn push_replaced(span: &[u8], finder: &memmem::Finder, old: &[u8], new: &[u8], out: &mut Vec<u8>) {
    let mut pos = 0;
    for hit in finder.find_iter(span) {
        out.extend_from_slice(&span[pos..hit]);
        out.extend_from_slice(new);
        pos = hit + old.len();
    }
    out.extend_from_slice(&span[pos..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8], old: &[u8], new: &[u8]) -> Result<Vec<u8>, ReplaceError> {
        let mut out = Vec::new();
        replace_cstrings(data, true, old, new, &mut out)?;
        Ok(out)
    }

    /// In place and copying agree, and undo puts every byte back.
    fn in_place_matches(data: &[u8], old: &[u8], new: &[u8]) {
        let mut buf = data.to_vec();
        let mut undo = Undo::new();
        let got = replace_cstrings_in_place(&mut buf, old, new, &mut undo);
        match all(data, old, new) {
            Ok(want) => {
                assert_eq!(buf, want, "{data:?}");
                let mut expected = Vec::new();
                let (_, n) = replace_cstrings(data, true, old, new, &mut expected).unwrap();
                assert_eq!(got.unwrap(), n);
                undo_in_place(&mut buf, &mut undo, 0);
            }
            Err(e) => assert_eq!(got.unwrap_err().to_string(), e.to_string()),
        }
        assert_eq!(buf, data, "restored after undo or error");
    }

    #[test]
    fn in_place_agrees_with_the_copying_replacement() {
        let long = b"/placeholder_placeholder_placeholder";
        let cases: &[&[u8]] = &[
            b"A/p/lib:/p/lib64\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0B",
            b"x/p\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0/p/bin\0",
            b"/p/lib\0\0", // not enough room: refused, nothing changed
            b"no prefix here\0",
            b"/p",
            b"",
        ];
        for data in cases {
            in_place_matches(data, b"/p", long);
            in_place_matches(data, long, b"/p");
        }
        let shrink = b"A/placeholder_placeholder_placeholder/lib\0B";
        in_place_matches(shrink, long, b"/p");
    }

    #[test]
    fn shrinks_and_pads_after_the_string() {
        let data = b"A/placeholder/lib:/placeholder/lib64\0B";
        let got = all(data, b"/placeholder", b"/p").unwrap();
        assert_eq!(got.len(), data.len());
        assert_eq!(
            &got[..],
            &b"A/p/lib:/p/lib64\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0B"[..]
        );
    }

    #[test]
    fn grows_back_into_padding() {
        let installed = all(b"x/placeholder/lib\0\0y", b"/placeholder", b"/p").unwrap();
        let restored = all(&installed, b"/p", b"/placeholder").unwrap();
        assert_eq!(restored, b"x/placeholder/lib\0\0y");
    }

    #[test]
    fn refuses_to_grow_over_data() {
        let err = all(b"x/p/lib\0\0y", b"/p", b"/placeholder").unwrap_err();
        assert_eq!(
            err,
            ReplaceError::NoRoom {
                offset: 1,
                needed: 10,
                available: 1
            }
        );
    }

    #[test]
    fn unterminated_string_at_end_is_padded_to_eof() {
        assert_eq!(
            all(b"ab/placeholder", b"/placeholder", b"/q").unwrap(),
            b"ab/q\0\0\0\0\0\0\0\0\0\0"
        );
        assert!(all(b"ab/q", b"/q", b"/placeholder").is_err());
    }

    #[test]
    fn leaves_bytes_before_the_prefix_alone() {
        let data = b"-L/placeholder/lib\0";
        assert_eq!(
            all(data, b"/placeholder", b"/n").unwrap(),
            b"-L/n/lib\0\0\0\0\0\0\0\0\0\0\0"
        );
    }
}
