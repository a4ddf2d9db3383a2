//! Text-mode replacement: every occurrence, any length change allowed.

use memchr::memmem;

/// Replace every `old` in `window` with `new`, appending to `out`.
///
/// Returns `(finished, replacements)`. When not `is_last`, the last `old.len() - 1` bytes may
/// begin an occurrence that the next chunk completes, so they are left unfinished.
pub fn replace_text(
    window: &[u8],
    is_last: bool,
    old: &[u8],
    new: &[u8],
    out: &mut Vec<u8>,
) -> (usize, usize) {
    let safe_end = if is_last || old.is_empty() {
        window.len()
    } else {
        window.len().saturating_sub(old.len() - 1)
    };
    if old.is_empty() {
        out.extend_from_slice(window);
        return (window.len(), 0);
    }
    let mut pos = 0;
    let mut count = 0;
    for hit in memmem::find_iter(window, old) {
        // `find_iter` yields non-overlapping hits left to right, like bytes.replace.
        if hit < pos {
            continue;
        }
        out.extend_from_slice(&window[pos..hit]);
        out.extend_from_slice(new);
        pos = hit + old.len();
        count += 1;
    }
    let end = safe_end.max(pos);
    out.extend_from_slice(&window[pos..end]);
    (end, count)
}

/// The length of `data` once every `old` in it is `new`, for sizing the output up front:
/// a long placeholder (conda-build's are 255 bytes) in place of a short prefix can make a
/// file several times larger, and growing the output by doubling holds twice that.
pub fn replaced_len(data: &[u8], old: &[u8], new: &[u8]) -> usize {
    if old.is_empty() || new.len() <= old.len() {
        return data.len();
    }
    let hits = memmem::find_iter(data, old).count();
    data.len() + hits * (new.len() - old.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        replace_text(data, true, old, new, &mut out);
        out
    }

    #[test]
    fn replaces_every_occurrence() {
        assert_eq!(
            all(b"a/old/b /old", b"/old", b"/new/longer"),
            b"a/new/longer/b /new/longer"
        );
        assert_eq!(all(b"nothing", b"/old", b"/x"), b"nothing");
        assert_eq!(all(b"aaaa", b"aa", b"b"), b"bb");
    }

    #[test]
    fn replaced_len_is_the_output_length_when_growing() {
        for (data, old, new) in [
            (&b"a/old/b /old"[..], &b"/old"[..], &b"/new/longer"[..]),
            (b"nothing", b"/old", b"/much/longer"),
            (b"aaaaa", b"aa", b"bbb"),
        ] {
            assert_eq!(replaced_len(data, old, new), all(data, old, new).len());
        }
        // Shrinking or equal: the input's length bounds the output.
        assert_eq!(replaced_len(b"/old/old", b"/old", b"/n"), 8);
    }

    #[test]
    fn holds_back_a_possible_partial_match() {
        let mut out = Vec::new();
        let (done, n) = replace_text(b"xx/ol", false, b"/old", b"/n", &mut out);
        assert_eq!((done, n), (2, 0));
        assert_eq!(out, b"xx");
    }
}
