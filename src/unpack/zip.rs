//! Reading zip archives: the central directory (ZIP64 included), and each entry's bytes,
//! stored or deflated, checked against its CRC. Entries are independent, so each is
//! inflated by whichever writer thread takes it.

use crate::le::{u16_at, u32_at, u64_at};

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: super::tar::Kind,
    /// The mode to give it; None for entries from systems without Unix modes.
    pub mode: Option<u32>,
    pub mtime: i64,
    pub method: u16,
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
    pub local: u64,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a valid zip archive: {what}"),
    )
}

/// Every entry of the central directory, in its order.
pub fn entries(file: &File, len: u64) -> io::Result<Vec<Entry>> {
    let look = len.min(65_535 + 22);
    let mut tail = vec![0u8; look as usize];
    file.read_exact_at(&mut tail, len - look)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == *b"PK\x05\x06")
        .ok_or_else(|| bad("no end of central directory (truncated?)"))?;
    let e = &tail[eocd..];
    let mut count = u16_at(e, 10) as u64;
    let mut cd_size = u32_at(e, 12) as u64;
    let mut cd_at = u32_at(e, 16) as u64;
    let eocd_at = len - look + eocd as u64;
    if eocd >= 20 && tail[eocd - 20..eocd - 16] == *b"PK\x06\x07" {
        let rec_at = u64_at(&tail, eocd - 20 + 8);
        let mut rec = [0u8; 56];
        file.read_exact_at(&mut rec, rec_at)?;
        if rec[..4] != *b"PK\x06\x06" {
            return Err(bad("a damaged ZIP64 end record"));
        }
        count = u64_at(&rec, 32);
        cd_size = u64_at(&rec, 40);
        cd_at = u64_at(&rec, 48);
    }
    if cd_at.checked_add(cd_size).is_none_or(|end| end > eocd_at) || cd_size > 1 << 32 {
        return Err(bad("its central directory lies outside the file"));
    }
    let mut cd = vec![0u8; cd_size as usize];
    file.read_exact_at(&mut cd, cd_at)?;
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut at = 0usize;
    while at + 46 <= cd.len() {
        let h = &cd[at..];
        if h[..4] != *b"PK\x01\x02" {
            return Err(bad("a damaged central directory"));
        }
        let (n, m, k) = (
            u16_at(h, 28) as usize,
            u16_at(h, 30) as usize,
            u16_at(h, 32) as usize,
        );
        if at + 46 + n + m + k > cd.len() {
            return Err(bad("a damaged central directory"));
        }
        let name = h[46..46 + n].to_vec();
        let extra = &h[46 + n..46 + n + m];
        let made_by = u16_at(h, 4);
        let flags = u16_at(h, 8);
        if flags & 1 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is encrypted", String::from_utf8_lossy(&name)),
            ));
        }
        let mut usize = u32_at(h, 24) as u64;
        let mut csize = u32_at(h, 20) as u64;
        let mut local = u32_at(h, 42) as u64;
        let mut mtime = None;
        let mut x = 0;
        while x + 4 <= extra.len() {
            let (id, size) = (u16_at(extra, x), u16_at(extra, x + 2) as usize);
            let body = &extra[x + 4..(x + 4 + size).min(extra.len())];
            if id == 1 {
                let mut p = 0;
                for field in [&mut usize, &mut csize, &mut local] {
                    if *field == 0xFFFF_FFFF && p + 8 <= body.len() {
                        *field = u64_at(body, p);
                        p += 8;
                    }
                }
            } else if id == 0x5455 && body.len() >= 5 && body[0] & 1 == 1 {
                mtime = Some(u32_at(body, 1) as i64);
            }
            x += 4 + size;
        }
        let external = u32_at(h, 38);
        let unix = made_by >> 8 == 3;
        let st_mode = if unix { external >> 16 } else { 0 };
        let kind = if unix && st_mode & S_IFMT == S_IFLNK {
            super::tar::Kind::Symlink
        } else if name.ends_with(b"/") || (unix && st_mode & S_IFMT == S_IFDIR) {
            super::tar::Kind::Dir
        } else {
            super::tar::Kind::File
        };
        out.push(Entry {
            name,
            kind,
            mode: (unix && st_mode != 0).then_some(st_mode & 0o7777),
            mtime: mtime.unwrap_or_else(|| dos_time(u16_at(h, 12), u16_at(h, 14))),
            method: u16_at(h, 10),
            crc: u32_at(h, 16),
            csize,
            usize,
            local,
        });
        at += 46 + n + m + k;
    }
    if out.len() as u64 != count && count != 0xFFFF {
        return Err(bad(
            "its central directory lists fewer entries than it says",
        ));
    }
    Ok(out)
}

/// An MS-DOS date and time, local time as unzip reads them.
fn dos_time(time: u16, date: u16) -> i64 {
    // SAFETY: mktime reads the struct it is given and normalises it.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = ((date >> 9) & 0x7f) as i32 + 80;
        tm.tm_mon = ((date >> 5) & 0x0f) as i32 - 1;
        tm.tm_mday = (date & 0x1f) as i32;
        tm.tm_hour = ((time >> 11) & 0x1f) as i32;
        tm.tm_min = ((time >> 5) & 0x3f) as i32;
        tm.tm_sec = ((time & 0x1f) * 2) as i32;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm) as i64
    }
}

/// An entry's bytes, inflated as they are read, checked against its size and CRC at
/// the end.
pub struct EntryReader<'a> {
    file: &'a File,
    pos: u64,
    left: u64,
    entry: &'a Entry,
    inflate: Option<flate2::Decompress>,
    input: Vec<u8>,
    in_pos: usize,
    out: u64,
    crc: crc32fast::Hasher,
}

impl<'a> EntryReader<'a> {
    pub fn new(file: &'a File, entry: &'a Entry) -> io::Result<EntryReader<'a>> {
        let mut h = [0u8; 30];
        file.read_exact_at(&mut h, entry.local)?;
        if h[..4] != *b"PK\x03\x04" {
            return Err(bad(
                "a local header is not where the central directory says",
            ));
        }
        let data = entry.local + 30 + u16_at(&h, 26) as u64 + u16_at(&h, 28) as u64;
        let inflate = match entry.method {
            0 => None,
            8 => Some(flate2::Decompress::new(false)),
            m => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is compressed with method {m}, which conda-pack does not read",
                        String::from_utf8_lossy(&entry.name)
                    ),
                ))
            }
        };
        Ok(EntryReader {
            file,
            pos: data,
            left: entry.csize,
            entry,
            inflate,
            input: Vec::new(),
            in_pos: 0,
            out: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    fn refill(&mut self) -> io::Result<()> {
        let n = self.left.min(1 << 20) as usize;
        self.input.resize(n, 0);
        self.file.read_exact_at(&mut self.input, self.pos)?;
        self.pos += n as u64;
        self.left -= n as u64;
        self.in_pos = 0;
        Ok(())
    }

    fn damaged(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is damaged (its bytes do not match its size and CRC)",
                String::from_utf8_lossy(&self.entry.name)
            ),
        )
    }
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = loop {
            if self.in_pos == self.input.len() && self.left > 0 {
                self.refill()?;
            }
            let avail = &self.input[self.in_pos..];
            match &mut self.inflate {
                None => {
                    let n = avail.len().min(buf.len());
                    buf[..n].copy_from_slice(&avail[..n]);
                    self.in_pos += n;
                    break n;
                }
                Some(d) => {
                    let (i0, o0) = (d.total_in(), d.total_out());
                    let status = d.decompress(avail, buf, flate2::FlushDecompress::None);
                    let Ok(status) = status else {
                        return Err(self.damaged());
                    };
                    let used = (d.total_in() - i0) as usize;
                    let made = (d.total_out() - o0) as usize;
                    self.in_pos += used;
                    if made > 0 || status == flate2::Status::StreamEnd {
                        break made;
                    }
                    if used == 0 && self.left == 0 && self.in_pos == self.input.len() {
                        return Err(self.damaged());
                    }
                }
            }
        };
        self.crc.update(&buf[..n]);
        self.out += n as u64;
        let ended = n == 0 || self.out > self.entry.usize;
        if ended && (self.out != self.entry.usize || self.crc.clone().finalize() != self.entry.crc)
        {
            return Err(self.damaged());
        }
        Ok(n)
    }
}
