//! POSIX tar (ustar headers, PAX records where ustar cannot say it), streamed into any
//! compressor. Owners are fixed to 0 and names left empty so archives are reproducible.

use super::compress::Encoder;
use super::{Archive, Meta, Origin};
use crate::content::Body;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

const BLOCK: usize = 512;
/// GNU tar and Python pad an archive to whole records of 20 blocks.
const RECORD: u64 = 20 * BLOCK as u64;
/// Largest size and mtime an 11-digit octal field holds.
const OCTAL_MAX: u64 = 0o77777777777;

pub struct TarArchive {
    out: Encoder,
    path: std::path::PathBuf,
    written: u64,
}

impl TarArchive {
    pub fn new(out: Encoder, path: &Path) -> TarArchive {
        TarArchive {
            out,
            path: path.to_path_buf(),
            written: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len() as u64;
        let r = self.out.write_all(bytes);
        self.io(r)
    }

    /// [`TarArchive::put`], taking the buffer over (see [`Encoder::put_owned`]).
    fn put_owned(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.written += bytes.len() as u64;
        let r = self.out.put_owned(bytes);
        self.io(r)
    }

    fn io(&self, r: std::io::Result<()>) -> Result<()> {
        r.map_err(|source| Error::io(self.path.clone(), source))
    }

    fn pad(&mut self) -> Result<()> {
        let rem = (self.written % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn header(
        &mut self,
        meta: &Meta,
        kind: ::tar::EntryType,
        size: u64,
        link: Option<&[u8]>,
    ) -> Result<()> {
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut h = ::tar::Header::new_ustar();
        let ustar = h.as_ustar_mut().expect("ustar header");
        if !set_name(&mut ustar.name, &mut ustar.prefix, &meta.path) {
            pax.push(("path", meta.path.clone()));
            let base = meta
                .path
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or(&meta.path);
            let base = &base[..base.len().min(100)];
            ustar.name[..base.len()].copy_from_slice(base);
        } else if !meta.path.is_ascii() {
            pax.push(("path", meta.path.clone()));
        }
        if let Some(link) = link {
            if link.len() <= 100 {
                ustar.linkname[..link.len()].copy_from_slice(link);
            }
            if link.len() > 100 || !link.is_ascii() {
                pax.push(("linkpath", link.to_vec()));
            }
        }
        if size > OCTAL_MAX {
            pax.push(("size", size.to_string().into_bytes()));
        }
        let mtime = meta.mtime.clamp(0, OCTAL_MAX as i64) as u64;
        if meta.mtime < 0 || meta.mtime as u64 > OCTAL_MAX {
            pax.push(("mtime", meta.mtime.to_string().into_bytes()));
        }
        if pax
            .iter()
            .any(|(k, v)| matches!(*k, "path" | "linkpath") && std::str::from_utf8(v).is_err())
        {
            // PAX strings are UTF-8 unless this says otherwise, first (as GNU tar and
            // Python write it): readers then take names as the bytes they are.
            pax.insert(0, ("hdrcharset", b"BINARY".to_vec()));
        }
        if !pax.is_empty() {
            self.pax_header(&pax)?;
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(meta.mode & 0o7777);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.put(h.as_bytes())
    }

    fn pax_header(&mut self, records: &[(&str, Vec<u8>)]) -> Result<()> {
        let mut body = Vec::new();
        for (key, value) in records {
            // "%d %s=%s\n", where %d counts the whole record including its own digits.
            let base = key.len() + value.len() + 3;
            let mut len = base + 1;
            while base + len.to_string().len() != len {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut h = ::tar::Header::new_ustar();
        h.set_path("././@PaxHeader").expect("short path");
        h.set_entry_type(::tar::EntryType::XHeader);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        self.put(h.as_bytes())?;
        self.put(&body)?;
        self.pad()
    }
}

/// Store `path` in ustar's name (and prefix) fields, verbatim; false if it does not fit.
fn set_name(name: &mut [u8; 100], prefix: &mut [u8; 155], path: &[u8]) -> bool {
    if path.len() <= name.len() {
        name[..path.len()].copy_from_slice(path);
        return true;
    }
    // Split at a '/' leaving at most 155 bytes before it and 1..=100 after it.
    let split = path
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= prefix.len() && path.len() - i - 1 <= name.len())
        .map(|(i, _)| i)
        .find(|&i| i + 1 < path.len());
    match split {
        Some(i) => {
            prefix[..i].copy_from_slice(&path[..i]);
            name[..path.len() - i - 1].copy_from_slice(&path[i + 1..]);
            true
        }
        None => false,
    }
}

impl Archive for TarArchive {
    fn file(&mut self, meta: &Meta, body: &Body, _origin: Origin<'_>) -> Result<()> {
        self.header(meta, ::tar::EntryType::Regular, body.len(), None)?;
        body.write_to(&mut |chunk| self.put(chunk))?;
        self.pad()
    }

    fn file_owned(&mut self, meta: &Meta, body: Body, origin: Origin<'_>) -> Result<()> {
        let Body::Mem(bytes) = body else {
            return self.file(meta, &body, origin);
        };
        self.header(meta, ::tar::EntryType::Regular, bytes.len() as u64, None)?;
        self.put_owned(bytes)?;
        self.pad()
    }

    fn symlink(&mut self, meta: &Meta, target: &[u8]) -> Result<()> {
        self.header(meta, ::tar::EntryType::Symlink, 0, Some(target))
    }

    fn hardlink(&mut self, meta: &Meta, to: &[u8]) -> Result<()> {
        self.header(meta, ::tar::EntryType::Link, 0, Some(to))
    }

    fn dir(&mut self, meta: &Meta) -> Result<()> {
        let mut m = meta.clone();
        if !m.path.ends_with(b"/") {
            m.path.push(b'/');
        }
        self.header(&m, ::tar::EntryType::Directory, 0, None)
    }

    fn supports_hardlinks(&self) -> bool {
        true
    }

    /// Not when packing on Windows, where conda-pack 0.9.2 stored the files links point
    /// to (`dereference=on_win`): a link there needs a privilege to make and to extract.
    fn stores_symlinks(&self) -> bool {
        cfg!(unix)
    }

    fn mark_tail(&mut self) -> Result<()> {
        let r = self.out.mark_tail(self.written);
        self.io(r)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.put(&[0u8; 2 * BLOCK])?;
        let rem = self.written % RECORD;
        if rem != 0 {
            let pad = vec![0u8; (RECORD - rem) as usize];
            self.put(&pad)?;
        }
        let path = self.path.clone();
        self.out.finish().map_err(|source| Error::io(path, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_split_or_go_to_pax() {
        let (mut n, mut p) = ([0u8; 100], [0u8; 155]);
        let path = format!("{}/{}", "d".repeat(150), "f".repeat(90));
        assert!(set_name(&mut n, &mut p, path.as_bytes()));
        assert_eq!(&p[..150], "d".repeat(150).as_bytes());
        assert_eq!(&n[..90], "f".repeat(90).as_bytes());
        let (mut n, mut p) = ([0u8; 100], [0u8; 155]);
        assert!(!set_name(&mut n, &mut p, "x".repeat(101).as_bytes()));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tar");
        let enc = Encoder::plain(std::fs::File::create(&path).unwrap());
        let mut t = TarArchive::new(enc, &path);
        for len in [5usize, 90, 96, 97, 995, 996, 1000] {
            t.pax_header(&[("path", vec![b'a'; len])]).unwrap();
        }
        Box::new(t).finish().unwrap();
        let out = std::fs::read(&path).unwrap();
        let mut pos = 0;
        for len in [5usize, 90, 96, 97, 995, 996, 1000] {
            let body = &out[pos + 512..];
            let sp = body.iter().position(|&b| b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&body[..sp]).unwrap().parse().unwrap();
            assert_eq!(n, sp + 1 + 5 + len + 1, "record for {len}");
            assert_eq!(body[n - 1], b'\n');
            pos += 512 + n.div_ceil(512) * 512;
        }
    }
}
