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
    fn holds_back_a_possible_partial_match() {
        let mut out = Vec::new();
        let (done, n) = replace_text(b"xx/ol", false, b"/old", b"/n", &mut out);
        assert_eq!((done, n), (2, 0));
        assert_eq!(out, b"xx");
    }
}
