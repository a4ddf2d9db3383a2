//! Reading tar streams: ustar, GNU (long names, base-256 numbers) and pax headers, from
//! any byte stream. Only what an environment holds is accepted: files, directories,
//! symbolic and hard links; anything else (devices, fifos, sparse files) is an error.

use std::io::{self, Read};

const BLOCK: usize = 512;
/// Longest pax or GNU long-name record we read: real ones are a path or two.
const MAX_META: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
}

/// One member, with the overrides of the pax or GNU records before it applied.
#[derive(Clone, Debug)]
pub struct Header {
    /// The name as stored (see `names::member` for what is accepted).
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Bytes of content that follow (files only).
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    /// Symbolic link target, or the earlier member a hard link names.
    pub link: Vec<u8>,
}

/// Why a stream is not a tar we extract.
#[derive(Debug)]
pub enum TarError {
    Io(io::Error),
    /// Not a valid header where one must be: `(offset, what)`.
    Damaged(u64, String),
    /// A member of a kind we refuse: `(name, what it is)`.
    Unsupported(Vec<u8>, &'static str),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> TarError {
        TarError::Io(e)
    }
}

/// A byte stream a tar is read from; what is skipped is read and dropped, unless the
/// input can seek past it.
pub trait Input: Read {
    fn skip_bytes(&mut self, mut n: u64) -> io::Result<()> {
        let mut scratch = [0u8; 8192];
        while n > 0 {
            let k = n.min(scratch.len() as u64) as usize;
            self.read_exact(&mut scratch[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

impl Input for &[u8] {}
impl Input for Box<dyn Read + Send> {}

/// Reads headers one after the other; the caller reads or skips each file's content.
pub struct TarReader<R> {
    input: R,
    /// Content bytes of the current member not read yet, then its padding.
    left: u64,
    pad: u64,
    /// Stream offset of the next byte.
    offset: u64,
    done: bool,
}

impl<R: Input> TarReader<R> {
    pub fn new(input: R) -> TarReader<R> {
        TarReader {
            input,
            left: 0,
            pad: 0,
            offset: 0,
            done: false,
        }
    }

    /// Where in the stream the reader is (the start of the next header once the current
    /// member is read or skipped).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn into_inner(self) -> R {
        self.input
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf).map_err(truncated)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.input.skip_bytes(n).map_err(truncated)?;
        self.offset += n;
        Ok(())
    }

    /// Read up to `buf.len()` bytes of the current member's content; 0 at its end.
    pub fn read_content(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.read_exact(&mut buf[..n])?;
        self.left -= n as u64;
        Ok(n)
    }

    /// Append the rest of the current member's content to `out`.
    pub fn read_all_content(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.left as usize, 0);
        let r = self.read_exact(&mut out[start..]);
        self.left = 0;
        r
    }

    fn finish_member(&mut self) -> io::Result<()> {
        let n = self.left + self.pad;
        self.left = 0;
        self.pad = 0;
        self.skip(n)
    }

    /// The next member, or None at the end of the archive.
    // Not an Iterator: a member's content is read between two calls.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Header>, TarError> {
        self.finish_member()?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Pax = Pax::default();
        loop {
            if self.done {
                return Ok(None);
            }
            let at = self.offset;
            let mut block = [0u8; BLOCK];
            match self.input.read(&mut block[..1]) {
                Ok(0) if long_name.is_none() && long_link.is_none() && pax.is_empty() => {
                    // No end-of-archive blocks: GNU tar accepts that too.
                    self.done = true;
                    return Ok(None);
                }
                Ok(0) => {
                    return Err(TarError::Damaged(
                        at,
                        "it ends after a pax or long-name record".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            self.offset += 1;
            self.read_exact(&mut block[1..])?;
            if block.iter().all(|&b| b == 0) {
                // The end: two zero blocks (one, then the end of the stream, is accepted).
                self.done = true;
                return Ok(None);
            }
            if !checksum_ok(&block) {
                return Err(TarError::Damaged(
                    at,
                    "not a tar header (bad checksum): the archive is damaged or not a tar".into(),
                ));
            }
            let kind = block[156];
            let size = number(&block[124..136])
                .ok_or_else(|| TarError::Damaged(at, "a header's size is not a number".into()))?;
            match kind {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > MAX_META {
                        return Err(TarError::Damaged(
                            at,
                            "a pax or long-name record is too long".into(),
                        ));
                    }
                    let mut body = vec![0u8; size as usize];
                    self.read_exact(&mut body)?;
                    self.skip(padding(size))?;
                    match kind {
                        b'x' => pax.parse(&body).map_err(|m| TarError::Damaged(at, m))?,
                        b'L' => long_name = Some(c_string(&body).to_vec()),
                        b'K' => long_link = Some(c_string(&body).to_vec()),
                        _ => {} // global pax records: nothing we use is set there
                    }
                    continue;
                }
                _ => {}
            }
            let size = pax.size.unwrap_or(size);
            let ustar = &block[257..263] == b"ustar\0";
            let mut path = c_string(&block[..100]).to_vec();
            if ustar && block[345] != 0 {
                let mut p = c_string(&block[345..500]).to_vec();
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
            let path = pax.path.take().or(long_name.take()).unwrap_or(path);
            let link = pax
                .linkpath
                .take()
                .or(long_link.take())
                .unwrap_or_else(|| c_string(&block[157..257]).to_vec());
            let mode = number(&block[100..108]).unwrap_or(0o644) as u32 & 0o7777;
            let mtime = match pax.mtime {
                Some(t) => t,
                None => signed_number(&block[136..148]).unwrap_or(0),
            };
            let kind = match kind {
                b'0' | b'\0' | b'7' if path.ends_with(b"/") && kind == b'\0' => Kind::Dir,
                b'0' | b'\0' | b'7' => Kind::File,
                b'5' => Kind::Dir,
                b'2' => Kind::Symlink,
                b'1' => Kind::HardLink,
                b'3' => return Err(TarError::Unsupported(path, "a character device")),
                b'4' => return Err(TarError::Unsupported(path, "a block device")),
                b'6' => return Err(TarError::Unsupported(path, "a fifo")),
                b'S' => return Err(TarError::Unsupported(path, "a sparse file")),
                _ => return Err(TarError::Unsupported(path, "of an unknown tar member type")),
            };
            if pax.sparse {
                return Err(TarError::Unsupported(path, "a sparse file"));
            }
            // Content follows files; anything stored after other members is skipped.
            if kind == Kind::File {
                self.left = size;
                self.pad = padding(size);
            } else {
                self.left = 0;
                self.pad = size + padding(size);
            }
            return Ok(Some(Header {
                path,
                kind,
                size: if kind == Kind::File { size } else { 0 },
                mode,
                mtime,
                link,
            }));
        }
    }
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends in the middle of a member: it is truncated",
        )
    } else {
        e
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn c_string(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// The header's checksum holds, summed as unsigned or (as some old writers did) signed.
fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let Some(stored) = number(&block[148..156]) else {
        return false;
    };
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    stored == unsigned || stored as i64 == signed
}

/// An octal field (leading spaces, ending at a space or NUL), or GNU's base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return None; // negative
        }
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)? + b as u64;
        }
        return Some(v);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        v = v.checked_mul(8)? + (d - b'0') as u64;
    }
    Some(v)
}

fn signed_number(field: &[u8]) -> Option<i64> {
    if field.first() == Some(&0xff) {
        let mut v: i64 = -1;
        for &b in &field[1..] {
            v = v.checked_mul(256)? | b as i64;
        }
        return Some(v);
    }
    number(field).and_then(|v| i64::try_from(v).ok())
}

/// What the pax records before a header set.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    mtime: Option<i64>,
    sparse: bool,
}

impl Pax {
    fn is_empty(&self) -> bool {
        self.path.is_none()
            && self.linkpath.is_none()
            && self.size.is_none()
            && self.mtime.is_none()
    }

    /// Records `"<len> <key>=<value>\n"`.
    fn parse(&mut self, mut body: &[u8]) -> Result<(), String> {
        let bad = || "a pax record is malformed".to_string();
        while !body.is_empty() {
            let sp = memchr::memchr(b' ', body).ok_or_else(bad)?;
            let len: usize = std::str::from_utf8(&body[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            if len <= sp + 1 || len > body.len() || body[len - 1] != b'\n' {
                return Err(bad());
            }
            let record = &body[sp + 1..len - 1];
            let eq = memchr::memchr(b'=', record).ok_or_else(bad)?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let text = || std::str::from_utf8(value).ok();
            match key {
                b"path" => self.path = Some(value.to_vec()),
                b"linkpath" => self.linkpath = Some(value.to_vec()),
                b"size" => self.size = Some(text().and_then(|s| s.parse().ok()).ok_or_else(bad)?),
                b"mtime" => {
                    // Seconds, perhaps with a fraction: whole seconds, as tar sets them.
                    let s = text().ok_or_else(bad)?;
                    let whole = s.split('.').next().unwrap_or("");
                    self.mtime = Some(whole.parse().map_err(|_| bad())?);
                }
                k if k.starts_with(b"GNU.sparse.") => self.sparse = true,
                _ => {}
            }
            body = &body[len..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(entries: &[(&str, ::tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = ::tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn reads_files_links_and_long_names() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        let data = build(&[
            ("bin/", ::tar::EntryType::Directory, b"", ""),
            ("bin/x", ::tar::EntryType::Regular, b"hello", ""),
            (&long, ::tar::EntryType::Regular, b"long", ""),
            ("bin/y", ::tar::EntryType::Symlink, b"", "x"),
            ("bin/z", ::tar::EntryType::Link, b"", "bin/x"),
        ]);
        let mut r = TarReader::new(&data[..]);
        let mut seen = Vec::new();
        while let Some(h) = r.next().unwrap() {
            let mut body = Vec::new();
            r.read_all_content(&mut body).unwrap();
            seen.push((
                String::from_utf8(h.path).unwrap(),
                h.kind,
                body,
                h.link,
                h.mtime,
            ));
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[1].2, b"hello");
        assert_eq!(seen[2].0, long);
        assert_eq!(seen[2].2, b"long");
        assert_eq!((seen[3].1, &seen[3].3[..]), (Kind::Symlink, &b"x"[..]));
        assert_eq!((seen[4].1, &seen[4].3[..]), (Kind::HardLink, &b"bin/x"[..]));
        assert_eq!(seen[0].4, 1_700_000_000);
    }

    #[test]
    fn refuses_devices_and_damage() {
        let data = build(&[("dev", ::tar::EntryType::Char, b"", "")]);
        assert!(matches!(
            TarReader::new(&data[..]).next(),
            Err(TarError::Unsupported(_, "a character device"))
        ));
        let mut data = build(&[("x", ::tar::EntryType::Regular, b"abc", "")]);
        data[10] ^= 1;
        assert!(matches!(
            TarReader::new(&data[..]).next(),
            Err(TarError::Damaged(0, _))
        ));
        let data = build(&[("x", ::tar::EntryType::Regular, &[1u8; 2000], "")]);
        let mut r = TarReader::new(&data[..1200]);
        r.next().unwrap().unwrap();
        let mut body = Vec::new();
        assert!(r.read_all_content(&mut body).is_err());
    }

    #[test]
    fn numbers_octal_and_base_256() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   755 \0"), Some(0o755));
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Some(1 << 32)
        );
        assert_eq!(signed_number(&[0xff; 12]), Some(-1));
        assert_eq!(number(b"12x4"), None);
    }
}
