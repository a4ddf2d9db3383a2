//! A directory tree as the "archive": `--format no-archive`, and the staging tree that
//! `mksquashfs` reads.
//!
//! Every path is checked to stay inside the root: no absolute paths, no `..`, and nothing
//! written through a symlink this writer created, so hostile metadata cannot make it
//! write elsewhere.

use super::{Archive, Meta, Origin};
use crate::content::Body;
use crate::error::{Error, IoContext, Result};
use crate::host;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

pub struct DirArchive {
    root: PathBuf,
    /// Every directory gets this mtime at the end: directories are created at pack time,
    /// and mksquashfs records their times, so a fixed one keeps the output reproducible.
    dir_mtime: i64,
    /// Hard-link unchanged files from the environment instead of copying (staging only:
    /// the output of `no-archive` must never share inodes with the environment or cache).
    link_unchanged: bool,
    symlinks: HashSet<PathBuf>,
}

impl DirArchive {
    pub fn new(root: &Path, link_unchanged: bool, dir_mtime: i64) -> Result<DirArchive> {
        fs::create_dir_all(root).at(root)?;
        Ok(DirArchive {
            root: root.to_path_buf(),
            dir_mtime,
            link_unchanged,
            symlinks: HashSet::new(),
        })
    }

    fn dest(&self, path: &[u8]) -> Result<PathBuf> {
        let rel = host::join(Path::new(""), path)?;
        let rel = rel.as_path();
        let mut dest = self.root.clone();
        let mut sub = PathBuf::new();
        for c in rel.components() {
            match c {
                Component::Normal(part) => {
                    sub.push(part);
                    if self.symlinks.contains(&sub) && sub != rel {
                        return Err(outside(rel));
                    }
                    dest.push(part);
                }
                Component::CurDir => {}
                _ => return Err(outside(rel)),
            }
        }
        if dest == self.root {
            return Err(outside(rel));
        }
        Ok(dest)
    }

    fn parent(dest: &Path) -> Result<()> {
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p).at(p)?;
        }
        Ok(())
    }

    /// Replace whatever is at `dest` (a re-added path wins, as in a tar archive).
    fn clear(dest: &Path) -> Result<()> {
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(dest).at(dest),
            Ok(m) => remove_file(dest, &m).at(dest),
            Err(_) => Ok(()),
        }
    }
}

fn outside(rel: &Path) -> Error {
    Error::Invalid(format!(
        "refusing to write {:?}: the path leaves the output directory",
        rel
    ))
}

fn system_time(t: i64) -> std::time::SystemTime {
    if t >= 0 {
        UNIX_EPOCH + Duration::from_secs(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.unsigned_abs())
    }
}

/// Remove the file `dest` (metadata `m`). Windows refuses to delete a read-only file, as
/// a file packed from a read-only one is: the flag is lifted first.
fn remove_file(dest: &Path, m: &fs::Metadata) -> std::io::Result<()> {
    #[cfg(windows)]
    if m.permissions().readonly() {
        let mut p = m.permissions();
        p.set_readonly(false);
        fs::set_permissions(dest, p)?;
    }
    #[cfg(unix)]
    let _ = m;
    fs::remove_file(dest)
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
}

/// Windows keeps one permission bit, read-only: set when nobody may write.
#[cfg(windows)]
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    let mut p = file.metadata()?.permissions();
    p.set_readonly(mode & 0o222 == 0);
    file.set_permissions(p)
}

fn set_mode_and_mtime(file: &File, dest: &Path, meta: &Meta) -> Result<()> {
    // The mode last: on Windows it may make the file read-only.
    file.set_modified(system_time(meta.mtime)).at(dest)?;
    set_mode(file, meta.mode).at(dest)
}

/// A symlink's own mtime (std can only set the target's): mksquashfs records it.
#[cfg(unix)]
fn set_link_mtime(link: &Path, mtime: i64) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(link.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("NUL in path {link:?}")))?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid C string and two timespecs, as utimensat(2) requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(Error::Io {
            path: link.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Give every directory under `dir` (and `dir` itself) the mtime `t`, deepest first.
fn stamp_dirs(dir: &Path, t: std::time::SystemTime) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry.file_type().at(&entry.path())?.is_dir() {
            stamp_dirs(&entry.path(), t)?;
        }
    }
    let times = fs::FileTimes::new().set_modified(t).set_accessed(t);
    open_dir(dir).at(dir)?.set_times(times).at(dir)
}

fn open_dir(dir: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        File::open(dir)
    }
    #[cfg(windows)]
    {
        // A directory opens only with backup semantics, and takes new times only through
        // a handle that may write attributes.
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_WRITE_ATTRIBUTES: u32 = 0x100;
        const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
        fs::OpenOptions::new()
            .access_mode(FILE_WRITE_ATTRIBUTES)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(dir)
    }
}

impl Archive for DirArchive {
    fn file(&mut self, meta: &Meta, body: &Body, origin: Origin<'_>) -> Result<()> {
        let dest = self.dest(&meta.path)?;
        Self::parent(&dest)?;
        Self::clear(&dest)?;
        if let Some((src, stamp)) = origin.unchanged {
            if self.link_unchanged && fs::hard_link(src, &dest).is_ok() {
                return Ok(());
            }
            // copy_file_range under the hood: no bytes pass through this process.
            let mut from = File::open(src).at(src)?;
            let mut f = File::create(&dest).at(&dest)?;
            std::io::copy(&mut from, &mut f).at(&dest)?;
            stamp.check(&from, src)?;
            return set_mode_and_mtime(&f, &dest, meta);
        }
        let mut f = File::create(&dest).at(&dest)?;
        body.write_to(&mut |chunk| f.write_all(chunk).at(&dest))?;
        set_mode_and_mtime(&f, &dest, meta)
    }

    #[cfg(unix)]
    fn symlink(&mut self, meta: &Meta, target: &[u8]) -> Result<()> {
        let dest = self.dest(&meta.path)?;
        Self::parent(&dest)?;
        Self::clear(&dest)?;
        std::os::unix::fs::symlink(host::os_string(target)?, &dest).at(&dest)?;
        self.symlinks
            .insert(dest.strip_prefix(&self.root).expect("inside").to_path_buf());
        set_link_mtime(&dest, meta.mtime)
    }

    #[cfg(windows)]
    fn symlink(&mut self, meta: &Meta, _target: &[u8]) -> Result<()> {
        Err(Error::Invalid(format!(
            "{}: links are stored as the files they point to on Windows",
            String::from_utf8_lossy(&meta.path)
        )))
    }

    fn hardlink(&mut self, meta: &Meta, to: &[u8]) -> Result<()> {
        let dest = self.dest(&meta.path)?;
        let src = self.dest(to)?;
        Self::parent(&dest)?;
        Self::clear(&dest)?;
        fs::hard_link(&src, &dest).at(&dest)
    }

    fn dir(&mut self, meta: &Meta) -> Result<()> {
        let dest = self.dest(&meta.path)?;
        fs::create_dir_all(&dest).at(&dest)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode & 0o7777)).at(&dest)
        }
        // Windows reads a directory's read-only flag as "customised by Explorer", not as
        // a permission: nothing to set.
        #[cfg(windows)]
        Ok(())
    }

    fn supports_hardlinks(&self) -> bool {
        true
    }

    /// Not on Windows: making a link there needs a privilege (see `pack::FOLLOWED`).
    fn stores_symlinks(&self) -> bool {
        cfg!(unix)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        stamp_dirs(&self.root, system_time(self.dir_mtime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_leave_the_root() {
        let d = tempfile::tempdir().unwrap();
        let mut a = DirArchive::new(&d.path().join("out"), false, 0).unwrap();
        let m = |p: &str| Meta {
            path: p.as_bytes().to_vec(),
            mode: 0o644,
            mtime: 0,
        };
        assert!(a
            .file(
                &m("../evil"),
                &Body::Mem(vec![]),
                Origin { unchanged: None }
            )
            .is_err());
        assert!(a
            .file(&m("/abs"), &Body::Mem(vec![]), Origin { unchanged: None })
            .is_err());
        // Windows stores no links: the packer hands this archive the files they point to.
        #[cfg(windows)]
        assert!(a.symlink(&m("lib/x"), b"/").is_err());
        #[cfg(unix)]
        {
            a.symlink(&m("lib/x"), b"/").unwrap();
            assert!(a
                .file(
                    &m("lib/x/passwd"),
                    &Body::Mem(vec![]),
                    Origin { unchanged: None }
                )
                .is_err());
        }
        a.file(
            &m("lib/ok"),
            &Body::Mem(b"hi".to_vec()),
            Origin { unchanged: None },
        )
        .unwrap();
        assert_eq!(fs::read(d.path().join("out/lib/ok")).unwrap(), b"hi");
    }
}
