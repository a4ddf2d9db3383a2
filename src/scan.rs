//! Walking an environment: every file, symlink and empty directory, in parallel.
//!
//! Symlinks are never followed (a link to a directory is one entry, like a link to a
//! file), so the walk cannot leave the prefix or loop.

use crate::error::{IoContext, Result};
use rayon::prelude::*;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Symlink,
    /// A directory with nothing in it (others are implied by their contents).
    EmptyDir,
    /// A socket, FIFO or device: nothing an archive should carry.
    Other,
}

impl Kind {
    /// The letter `index_env`'s `kind` column holds (exported to Python as `KIND_*`).
    pub fn code(self) -> u8 {
        match self {
            Kind::File => b'f',
            Kind::Symlink => b'l',
            Kind::EmptyDir => b'd',
            Kind::Other => b'o',
        }
    }
}

#[derive(Debug)]
pub struct Found {
    /// Path relative to the prefix.
    pub path: PathBuf,
    pub kind: Kind,
    /// Not read by the walk (0); see [`sizes`].
    pub size: u64,
    /// Inode number from the directory entry (no stat needed), for regular files; 0 else.
    pub ino: u64,
}

/// Sizes of the regular files among `found` (others stay 0), read in parallel.
pub fn sizes(prefix: &Path, found: &mut [Found]) {
    found
        .par_iter_mut()
        .filter(|f| f.kind == Kind::File)
        .for_each(|f| {
            f.size = fs::symlink_metadata(prefix.join(&f.path))
                .map(|m| m.len())
                .unwrap_or(0);
        });
}

/// Walk `prefix`, skipping the top-level names in `skip_top`.
pub fn scan(prefix: &Path, skip_top: &[OsString]) -> Result<Vec<Found>> {
    let found = Mutex::new(Vec::new());
    walk(prefix, Path::new(""), skip_top, &found)?;
    Ok(found.into_inner().unwrap_or_else(PoisonError::into_inner))
}

/// Add what directory `rel` holds to `found`: a directory's files in one go, its
/// subdirectories walked in parallel. A file costs its path and nothing else (no vector or
/// task of its own), and everything lands in one vector, which grows in place: vectors
/// per directory, joined at the end, had left 5 MB of freed heap behind on a 100k-file
/// environment, all of it still resident when the index peaks.
fn walk(prefix: &Path, rel: &Path, skip: &[OsString], found: &Mutex<Vec<Found>>) -> Result<()> {
    let abs = prefix.join(rel);
    let children: Vec<fs::DirEntry> = fs::read_dir(&abs)
        .at(&abs)?
        .collect::<std::io::Result<_>>()
        .at(&abs)?;
    let mut here = Vec::with_capacity(children.len());
    if children.is_empty() && !rel.as_os_str().is_empty() {
        here.push(Found {
            path: rel.to_path_buf(),
            kind: Kind::EmptyDir,
            size: 0,
            ino: 0,
        });
    }
    let mut dirs = Vec::new();
    for entry in &children {
        let name = entry.file_name();
        if skip.contains(&name) {
            continue;
        }
        let path = rel.join(name);
        // The type comes with the directory entry; no stat per file: on a large
        // environment that is most of a walk's cost, and the packer reads each file's size
        // when it opens it.
        let ft = entry.file_type().at_with(|| prefix.join(&path))?;
        let kind = if ft.is_dir() {
            dirs.push(path);
            continue;
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        let ino = if kind == Kind::File { entry.ino() } else { 0 };
        here.push(Found {
            path,
            kind,
            size: 0,
            ino,
        });
    }
    drop(children);
    if !here.is_empty() {
        let mut all = found.lock().unwrap_or_else(PoisonError::into_inner);
        all.append(&mut here);
    }
    dirs.par_iter()
        .try_for_each(|dir| walk(prefix, dir, &[], found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_links_and_empty_dirs_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("a/b")).unwrap();
        fs::create_dir_all(p.join("empty")).unwrap();
        fs::create_dir_all(p.join("pkgs/x")).unwrap();
        fs::write(p.join("a/b/f.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink("b", p.join("a/link")).unwrap();
        std::os::unix::fs::symlink("/", p.join("a/outside")).unwrap();
        let mut found = scan(p, &["pkgs".into()]).unwrap();
        sizes(p, &mut found);
        let mut got: Vec<(String, Kind, u64)> = found
            .into_iter()
            .map(|f| (f.path.to_string_lossy().into_owned(), f.kind, f.size))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("a/b/f.txt".into(), Kind::File, 5),
                ("a/link".into(), Kind::Symlink, 0),
                ("a/outside".into(), Kind::Symlink, 0),
                ("empty".into(), Kind::EmptyDir, 0),
            ]
        );
    }
}
