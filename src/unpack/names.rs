//! Which member names and links an archive may hold, decided before anything is written:
//! nothing an archive says can put a file outside the directory it is unpacked into.

use std::collections::HashMap;

/// A member name as a path relative to the destination: `.` parts and repeated or
/// trailing slashes dropped; None for absolute names, `..` parts and NULs. The empty
/// path is the destination itself.
pub fn member(name: &[u8]) -> Option<Vec<u8>> {
    if name.starts_with(b"/") || name.contains(&0) {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return None,
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Some(out)
}

/// `path`'s directory and last part (`""` for the destination's own members).
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memrchr(b'/', path) {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

/// What a path is in the tree being unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory the archive names, or one made for members below it.
    Dir,
    File,
    Symlink,
}

/// Resolve `target`, the target of the symbolic link at `link`, as the system would once
/// everything is unpacked (following the archive's other links), and tell whether it
/// stays inside the destination. Absolute targets never do. Parts below a path the tree
/// does not hold cannot be links, so they resolve as written.
pub fn link_stays_inside(
    nodes: &HashMap<Vec<u8>, Node>,
    links: &HashMap<Vec<u8>, Vec<u8>>,
    link: &[u8],
    target: &[u8],
) -> bool {
    if target.is_empty() || target.starts_with(b"/") {
        return false;
    }
    let (dir, _) = split(link);
    let mut at: Vec<Vec<u8>> = parts(dir);
    let mut todo: Vec<Vec<u8>> = parts(target).into_iter().rev().collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match &part[..] {
            b"." => {}
            b".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            _ => {
                at.push(part);
                let here = at.join(&b'/');
                if let Some(t) = links.get(&here) {
                    hops += 1;
                    if hops > 40 || t.is_empty() || t.starts_with(b"/") {
                        return false;
                    }
                    at.pop();
                    todo.extend(parts(t).into_iter().rev());
                } else if nodes.get(&here) == Some(&Node::File) && !todo.is_empty() {
                    return true; // "file/x" resolves to nothing: harmless
                }
            }
        }
    }
    true
}

fn parts(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert_eq!(member(b"./bin//x/").unwrap(), b"bin/x");
        assert_eq!(member(b"./").unwrap(), b"");
        assert!(member(b"/etc/passwd").is_none());
        assert!(member(b"a/../../x").is_none());
        assert!(member(b"..").is_none());
        assert!(member(b"a\0b").is_none());
    }

    #[test]
    fn links_are_followed_through_other_links() {
        let mut links = HashMap::new();
        let nodes = HashMap::new();
        let inside = |links: &HashMap<Vec<u8>, Vec<u8>>, l: &[u8], t: &[u8]| {
            link_stays_inside(&nodes, links, l, t)
        };
        assert!(inside(&links, b"lib/a", b"b"));
        assert!(inside(&links, b"lib/a", b"../bin/x"));
        assert!(!inside(&links, b"lib/a", b"../../x"));
        assert!(!inside(&links, b"a", b"/usr/lib"));
        // up -> .. is inside; "up/.." from the root is not.
        links.insert(b"a/up".to_vec(), b"..".to_vec());
        assert!(inside(&links, b"a/up", b".."));
        assert!(!inside(&links, b"b", b"a/up/.."));
        // A loop is refused rather than followed for ever.
        links.insert(b"l1".to_vec(), b"l2".to_vec());
        links.insert(b"l2".to_vec(), b"l1".to_vec());
        assert!(!inside(&links, b"x", b"l1/y"));
    }
}
