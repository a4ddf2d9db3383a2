//! What differs between the systems we pack on: how a path is spelled as bytes, and what a
//! file's metadata says about its mode, time and identity.
//!
//! Everything else in the crate handles paths as bytes: archive member names are bytes,
//! and Python hands them over as `os.fsencode` makes them. On Unix those are the path's
//! own bytes. On Windows a name is UTF-16 that need not be valid (a lone surrogate is a
//! legal file name), and `os.fsencode` spells it as UTF-8 that lets surrogates through
//! (WTF-8), which is also how `OsStr` holds it: so the bytes are `as_encoded_bytes()`
//! there too, every name round-trips, and one is decoded back by [`os_string`], never by
//! trusting that bytes from elsewhere are well formed. Relative paths use `/` in bytes on
//! both systems (conda's records and archives do); [`join`] turns them into `\` on
//! Windows, where an extended-length (`\\?\`) prefix takes no other separator.

use crate::error::Result;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

/// A path's bytes (see the module's documentation).
pub fn bytes(p: &OsStr) -> &[u8] {
    p.as_encoded_bytes()
}

/// The path `b` names, refusing bytes no path of this system can have.
pub fn os_string(b: &[u8]) -> Result<OsString> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(OsStr::from_bytes(b).to_os_string())
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStringExt;
        decode_wtf8(b)
            .map(|w| OsString::from_wide(&w))
            .ok_or_else(|| {
                crate::error::Error::Invalid(format!(
                    "{:?} is not a Windows path (not UTF-8, even allowing lone surrogates)",
                    String::from_utf8_lossy(b)
                ))
            })
    }
}

/// Bytes read from a file (a shebang's interpreter) as the `str` Python makes of them on
/// Linux: invalid UTF-8 bytes as lone surrogates U+DC80..U+DCFF (`surrogateescape`), so a
/// Linux environment packed on Windows records exactly what packing it on Linux would.
pub fn escaped(b: &[u8]) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(b).to_os_string()
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStringExt;
        OsString::from_wide(&surrogate_escape(b))
    }
}

/// `prefix` joined with `rel`, a `/`-separated relative path in bytes.
pub fn join(prefix: &Path, rel: &[u8]) -> Result<PathBuf> {
    #[cfg(unix)]
    {
        Ok(prefix.join(os_string(rel)?))
    }
    #[cfg(windows)]
    {
        let rel: Vec<u8> = rel
            .iter()
            .map(|&c| if c == b'/' { b'\\' } else { c })
            .collect();
        Ok(prefix.join(os_string(&rel)?))
    }
}

/// `rel` (with `/` separators) and then `name`: the relative path of a walked entry.
pub fn child(rel: &Path, name: &OsStr) -> PathBuf {
    #[cfg(unix)]
    {
        rel.join(name)
    }
    #[cfg(windows)]
    {
        // Path::join would add `\`, and the walk's paths are the records' spelling.
        if rel.as_os_str().is_empty() {
            return PathBuf::from(name);
        }
        let mut s = rel.as_os_str().to_os_string();
        s.push("/");
        s.push(name);
        PathBuf::from(s)
    }
}

/// `prefix` joined with `rel`, a relative path made by [`child`].
pub fn under(prefix: &Path, rel: &Path) -> PathBuf {
    #[cfg(unix)]
    {
        prefix.join(rel)
    }
    #[cfg(windows)]
    {
        join(prefix, bytes(rel.as_os_str())).expect("a walked path decodes")
    }
}

/// The permission bits an archive stores for a file, directory or link.
pub fn mode(m: &Metadata, path: &Path) -> u32 {
    #[cfg(unix)]
    {
        let _ = path;
        use std::os::unix::fs::MetadataExt;
        m.mode() & 0o7777
    }
    #[cfg(windows)]
    {
        // Python's os.stat on Windows, which conda-pack 0.9.2 archived: read-only or not,
        // and execute bits for directories and for what cmd.exe runs by extension.
        use std::os::windows::fs::MetadataExt;
        const READONLY: u32 = 0x1;
        let mut mode = if m.file_attributes() & READONLY != 0 {
            0o444
        } else {
            0o666
        };
        let runs = path.extension().is_some_and(|e| {
            ["exe", "bat", "cmd", "com"]
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
        });
        if m.is_dir() || runs {
            mode |= 0o111;
        }
        mode
    }
}

/// Modification time, whole seconds since 1970 (rounded down).
pub fn mtime(m: &Metadata) -> i64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        m.mtime()
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::MetadataExt;
        (m.last_write_time() as i64).div_euclid(TICKS_PER_SECOND) - FILETIME_TO_UNIX
    }
}

/// 100-nanosecond ticks, as Windows counts file times.
#[cfg(windows)]
const TICKS_PER_SECOND: i64 = 10_000_000;
/// Seconds from 1601 (where Windows file times start) to 1970.
#[cfg(windows)]
const FILETIME_TO_UNIX: i64 = 11_644_473_600;

/// What identifies the file's content short of reading it, for [`crate::content::Stamp`]:
/// `(device, file id, size, mtime, mtime nanoseconds)`.
pub fn stamp(m: &Metadata) -> (u64, u64, u64, i64, i64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
    }
    #[cfg(windows)]
    {
        // The file index is unstable in std; the creation time stands in for it: a file
        // renamed over this one brings its own.
        use std::os::windows::fs::MetadataExt;
        (0, m.creation_time(), m.len(), m.last_write_time() as i64, 0)
    }
}

/// `(device, file id)` of the regular file `path` (metadata `m`) if it has more than one
/// name, so that archives can store it once; None when it has one, or cannot be told.
/// On Unix, `shared` (the ids the walk saw twice in the environment) limits it further;
/// on Windows the walk learns no ids, so the file is asked.
pub fn link_key(
    m: &Metadata,
    path: &Path,
    shared: Option<&std::collections::HashSet<u64>>,
) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let _ = path;
        use std::os::unix::fs::MetadataExt;
        let inner = shared.is_none_or(|set| set.contains(&m.ino()));
        (m.nlink() > 1 && inner).then(|| (m.dev(), m.ino()))
    }
    #[cfg(windows)]
    {
        let _ = (m, shared);
        windows::link_key(path).ok().flatten()
    }
}

/// Write all of `buf` at `offset` of `file`. On Windows this moves the file's cursor:
/// only for patching a file that is otherwise written.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut done, mut at) = (0, offset);
        while done < buf.len() {
            match file.seek_write(&buf[done..], at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Fill `buf` from `offset` of `file`. On Windows this moves the file's cursor: only for
/// files read this way alone.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut done, mut at) = (0, offset);
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], at) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    done += n;
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One read of `file` into `buf`, which need not be initialised; how many bytes arrived.
pub fn read_uninit(file: &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: the kernel writes at most `buf.len()` bytes into memory we own.
        let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    #[cfg(windows)]
    {
        windows::read_uninit(file, buf)
    }
}

/// Whether `e` says another program holds the file (opened it without sharing, or locked
/// a range of it): Windows enforces both, Unix neither.
pub fn held_elsewhere(e: &io::Error) -> bool {
    // ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION
    cfg!(windows) && matches!(e.raw_os_error(), Some(32) | Some(33))
}

#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, ReadFile, BY_HANDLE_FILE_INFORMATION,
    };

    pub fn link_key(path: &Path) -> io::Result<Option<(u64, u64)>> {
        // No access asked: a file another program opened without sharing still answers.
        let file = std::fs::OpenOptions::new().access_mode(0).open(path)?;
        let mut info = MaybeUninit::<BY_HANDLE_FILE_INFORMATION>::uninit();
        // SAFETY: a valid handle, and a pointer to room for the structure it fills.
        if unsafe { GetFileInformationByHandle(file.as_raw_handle(), info.as_mut_ptr()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the call succeeded, so it filled the structure.
        let info = unsafe { info.assume_init() };
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        Ok((info.nNumberOfLinks > 1).then_some((u64::from(info.dwVolumeSerialNumber), index)))
    }

    pub fn read_uninit(file: &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let want = buf.len().min(u32::MAX as usize) as u32;
        let mut got = 0u32;
        // SAFETY: ReadFile writes at most `want` bytes into memory we own and says how
        // many; synchronous (no OVERLAPPED) on a handle std opened without overlapped I/O.
        let ok = unsafe {
            ReadFile(
                file.as_raw_handle(),
                buf.as_mut_ptr().cast(),
                want,
                &mut got,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(got as usize)
    }
}

/// UTF-16 code units of `b` read as UTF-8 in which surrogate code points may appear (as
/// `os.fsencode` writes them on Windows): None if `b` is not that.
#[cfg_attr(unix, allow(dead_code))]
pub fn decode_wtf8(b: &[u8]) -> Option<Vec<u16>> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let lead = b[i];
        let (len, min, bits) = match lead {
            0x00..=0x7F => {
                out.push(u16::from(lead));
                i += 1;
                continue;
            }
            0xC2..=0xDF => (2, 0x80, u32::from(lead & 0x1F)),
            0xE0..=0xEF => (3, 0x800, u32::from(lead & 0x0F)),
            0xF0..=0xF4 => (4, 0x1_0000, u32::from(lead & 0x07)),
            _ => return None,
        };
        let tail = b.get(i + 1..i + len)?;
        let mut cp = bits;
        for &c in tail {
            if c & 0xC0 != 0x80 {
                return None;
            }
            cp = (cp << 6) | u32::from(c & 0x3F);
        }
        if cp < min || cp > 0x10_FFFF {
            return None;
        }
        if cp >= 0x1_0000 {
            let v = cp - 0x1_0000;
            out.push(0xD800 | (v >> 10) as u16);
            out.push(0xDC00 | (v & 0x3FF) as u16);
        } else {
            out.push(cp as u16);
        }
        i += len;
    }
    Some(out)
}

/// The bytes `os.fsencode` makes of a Windows name: UTF-8, a lone surrogate as its own
/// three bytes.
#[cfg_attr(unix, allow(dead_code))]
pub fn encode_wtf8(units: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.len());
    for unit in char::decode_utf16(units.iter().copied()) {
        match unit {
            Ok(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            Err(e) => {
                let s = u32::from(e.unpaired_surrogate());
                out.extend_from_slice(&[
                    0xE0 | (s >> 12) as u8,
                    0x80 | ((s >> 6) & 0x3F) as u8,
                    0x80 | (s & 0x3F) as u8,
                ]);
            }
        }
    }
    out
}

/// `b` as UTF-16, each byte of an invalid UTF-8 sequence as U+DC00 plus the byte.
#[cfg_attr(unix, allow(dead_code))]
pub fn surrogate_escape(b: &[u8]) -> Vec<u16> {
    let mut out = Vec::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.extend(chunk.valid().encode_utf16());
        out.extend(chunk.invalid().iter().map(|&x| 0xDC00 | u16::from(x)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names conda can install, and names only Windows allows (lone surrogates).
    fn names() -> Vec<Vec<u16>> {
        let mut v: Vec<Vec<u16>> = ["plain.txt", "été", "日本語", "emoji-😀", "a b+c"]
            .iter()
            .map(|s| s.encode_utf16().collect())
            .collect();
        v.push(vec![0x61, 0xD800, 0x62]); // a lone lead surrogate
        v.push(vec![0xDC00]); // a lone trail surrogate
        v.push(vec![0xDC00, 0xD800]); // trail before lead: two lone ones, not a pair
        v.push(vec![0xD83D, 0xDE00, 0xD83D]); // a pair, then a lone lead
        v
    }

    #[test]
    fn every_windows_name_round_trips_through_its_bytes() {
        for units in names() {
            let b = encode_wtf8(&units);
            assert_eq!(decode_wtf8(&b).as_deref(), Some(&units[..]), "{b:?}");
            if let Ok(s) = String::from_utf16(&units) {
                assert_eq!(b, s.as_bytes());
            }
        }
    }

    #[test]
    fn bytes_that_no_windows_name_has_are_refused() {
        for bad in [
            &b"\xff"[..],
            b"\xc0\x80",         // overlong NUL
            b"\xe0\x80\x80",     // overlong
            b"\xf4\x90\x80\x80", // past U+10FFFF
            b"\xe6\x97",         // cut short
            b"a\x80",
        ] {
            assert_eq!(decode_wtf8(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_escaped_as_python_does_on_linux() {
        let got = surrogate_escape(b"/opt/\xffenv/\xc3\xa9");
        let want: Vec<u16> = "/opt/"
            .encode_utf16()
            .chain([0xDCFF])
            .chain("env/é".encode_utf16())
            .collect();
        assert_eq!(got, want);
    }

    #[cfg(windows)]
    #[test]
    fn std_holds_windows_names_as_python_encodes_them() {
        use std::os::windows::ffi::{OsStrExt, OsStringExt};
        for units in names() {
            let s = OsString::from_wide(&units);
            assert_eq!(bytes(&s), &encode_wtf8(&units)[..]);
            let back = os_string(bytes(&s)).unwrap();
            assert_eq!(back.encode_wide().collect::<Vec<_>>(), units);
        }
        assert!(os_string(b"\xff").is_err());
    }

    #[cfg(windows)]
    #[test]
    fn relative_paths_join_with_backslashes_even_under_an_extended_length_prefix() {
        let p = join(Path::new(r"\\?\C:\envs\x"), b"Lib/site-packages/a.py").unwrap();
        assert_eq!(p, Path::new(r"\\?\C:\envs\x\Lib\site-packages\a.py"));
        let rel = child(&child(Path::new(""), OsStr::new("Lib")), OsStr::new("a.py"));
        assert_eq!(bytes(rel.as_os_str()), b"Lib/a.py");
        assert_eq!(under(Path::new(r"C:\e"), &rel), Path::new(r"C:\e\Lib\a.py"));
    }
}

#[cfg(all(test, windows))]
#[path = "windows_tests.rs"]
mod windows_tests;
