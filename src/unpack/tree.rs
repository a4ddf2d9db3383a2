//! The destination tree, reached only through directories opened one level at a time
//! without following links (as conda-unpack reaches an environment), and files created
//! only exclusively: whatever links an archive holds or someone plants meanwhile, nothing
//! is written through one.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Open directory `name` in `dir` without following a link.
pub fn open_dir_at(dir: RawFd, name: &[u8]) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `c` is a valid C string; the returned descriptor is ours to own.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), DIR_FLAGS) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn open_root(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: as in `open_dir_at`.
    let fd = check(unsafe { libc::open(c.as_ptr(), DIR_FLAGS) })?;
    // SAFETY: as in `open_dir_at`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Create `name` in `dir` exclusively (never through a link), for writing.
pub fn create_file(dir: RawFd, name: &[u8], mode: u32) -> io::Result<std::fs::File> {
    let c = cstr(name)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as in `open_dir_at`.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: as in `open_dir_at`.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Open an existing regular file `name` in `dir` for reading and writing, not through a link.
pub fn open_file(dir: RawFd, name: &[u8], write: bool) -> io::Result<std::fs::File> {
    let c = cstr(name)?;
    let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
    let flags = access | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as in `open_dir_at`.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), flags) })?;
    // SAFETY: as in `open_dir_at`.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

pub fn mkdir_at(dir: RawFd, name: &[u8]) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir, c.as_ptr(), 0o700) }).map(drop)
}

pub fn symlink_at(target: &[u8], dir: RawFd, name: &[u8]) -> io::Result<()> {
    let (t, c) = (cstr(target)?, cstr(name)?);
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir, c.as_ptr()) }).map(drop)
}

/// A hard link `to_dir/to_name` of `from_dir/from_name` (never following a link there).
pub fn link_at(from_dir: RawFd, from_name: &[u8], to_dir: RawFd, to_name: &[u8]) -> io::Result<()> {
    let (f, t) = (cstr(from_name)?, cstr(to_name)?);
    // SAFETY: valid C strings; flags 0: a symbolic link is linked, not followed.
    check(unsafe { libc::linkat(from_dir, f.as_ptr(), to_dir, t.as_ptr(), 0) }).map(drop)
}

pub fn unlink_at(dir: RawFd, name: &[u8]) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir, c.as_ptr(), 0) }).map(drop)
}

pub fn rename_at(dir: RawFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid C strings.
    check(unsafe { libc::renameat(dir, f.as_ptr(), dir, t.as_ptr()) }).map(drop)
}

fn timespec(secs: i64, nanos: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as _,
    }
}

/// Both times of the open file `fd` set to `mtime` (seconds, plus `nanos`).
pub fn set_times(fd: RawFd, mtime: i64, nanos: i64) -> io::Result<()> {
    let t = [timespec(mtime, nanos), timespec(mtime, nanos)];
    // SAFETY: `t` holds two timespecs.
    check(unsafe { libc::futimens(fd, t.as_ptr()) }).map(drop)
}

/// [`set_times`] for `name` in `dir` itself, a link not followed.
pub fn set_link_times(dir: RawFd, name: &[u8], mtime: i64) -> io::Result<()> {
    let c = cstr(name)?;
    let t = [timespec(mtime, 0), timespec(mtime, 0)];
    // SAFETY: valid C string, two timespecs.
    check(unsafe { libc::utimensat(dir, c.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

pub fn chmod_fd(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain system call on a descriptor.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: `st` is written by fstat before it is read.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd, &mut st))?;
        Ok(st)
    }
}

/// `name` in `dir`, a link not followed; None when it does not exist.
pub fn lstat_at(dir: RawFd, name: &[u8]) -> io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    // SAFETY: `st` is written by fstatat before it is read.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(st))
    }
}

/// The process's umask, read without changing it for long (it is process-wide).
pub fn umask() -> u32 {
    // SAFETY: umask cannot fail; the old mask is put back at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

/// Directories below a root, opened on demand and kept open while files are written in
/// them (members come in path order, so the same few repeat).
pub struct Dirs {
    root: OwnedFd,
    open: HashMap<Vec<u8>, OwnedFd>,
}

/// Open directories kept per thread: a path's ancestors and a few recent siblings.
const KEEP: usize = 128;

impl Dirs {
    pub fn new(root: OwnedFd) -> Dirs {
        Dirs {
            root,
            open: HashMap::new(),
        }
    }

    pub fn root(&self) -> RawFd {
        self.root.as_raw_fd()
    }

    pub fn try_clone(&self) -> io::Result<Dirs> {
        Ok(Dirs::new(self.root.try_clone()?))
    }

    /// The directory at relative path `rel` (`""`: the root), opened level by level
    /// without following links; with `create`, missing levels are made (mode 0700 until
    /// the end of the unpack).
    pub fn get(&mut self, rel: &[u8], create: bool) -> io::Result<RawFd> {
        if rel.is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if let Some(fd) = self.open.get(rel) {
            return Ok(fd.as_raw_fd());
        }
        let (up, name) = super::names::split(rel);
        let parent = self.get(up, create)?;
        let fd = match open_dir_at(parent, name) {
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                match mkdir_at(parent, name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                open_dir_at(parent, name)?
            }
            r => r?,
        };
        if self.open.len() >= KEEP {
            self.open.clear();
            // The parent was just closed with the rest; the caller only needs `fd`.
        }
        let raw = fd.as_raw_fd();
        self.open.insert(rel.to_vec(), fd);
        Ok(raw)
    }
}
