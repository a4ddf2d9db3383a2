//! Zip, every file entry deflated, ZIP64 where sizes, offsets or counts need it.
//!
//! Entries are cut into blocks compressed in parallel (one raw deflate stream per entry,
//! the blocks sync-flushed and the stream closed by an empty final block), so a zip of
//! many small files and a zip of one huge file both use every worker. The output file
//! is seekable, so local headers are patched with CRC and sizes at the end instead of
//! using data descriptors, which some streaming readers mishandle.
//!
//! The central directory (~90 bytes an entry) is spilled to an unnamed file beside the
//! archive as entries complete and copied in at the end, so memory does not grow with the
//! number of files: only what patching the local headers needs stays, 32 bytes an entry.

use super::blocks::{wait, Codec, Pipeline, Ticket};
use super::compress::GZIP_BLOCK;
use super::deflate;
use super::{Archive, Meta, Origin};
use crate::content::Body;
use crate::error::{Cancel, Error, Result};
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

const U32_MAX: u64 = 0xFFFF_FFFF;
/// Deflate can grow incompressible data by a few bytes per 16 KiB; entries this large get a
/// ZIP64 local header in case their compressed size ends up past 4 GiB.
const ZIP64_LOCAL_AT: u64 = U32_MAX - (U32_MAX >> 10);
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// Produces an entry's bytes into the sink it is given.
type BodyFn<'a> = dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> + 'a;

pub const ZIP64_DISABLED: &str = "Large Zip File: ZIP64 extensions required but were disabled";

struct EntryDeflate {
    level: u32,
}

struct Block {
    bytes: Vec<u8>,
    crc: u32,
    len: u64,
}

impl Codec for EntryDeflate {
    type Out = Block;

    fn compress(&self, data: &[u8]) -> io::Result<Block> {
        self.compress_block(data, false)
    }

    fn compress_block(&self, data: &[u8], last: bool) -> io::Result<Block> {
        Ok(Block {
            bytes: deflate::compress(self.level, data, last)?,
            crc: crc32fast::hash(data),
            len: data.len() as u64,
        })
    }
}

/// What the output thread needs to place an entry.
struct Begin {
    name: Vec<u8>,
    external: u32,
    mtime: i64,
    zip64_local: bool,
    stored: bool,
}

enum Mark {
    Begin(Begin),
    /// The entry is complete; `closed` when its last block already ended the stream.
    End {
        closed: bool,
    },
}

struct Central {
    begin: Begin,
    offset: u64,
    crc: u32,
    csize: u64,
    usize: u64,
}

/// Where an entry's local header gets its CRC and sizes once the entry is written.
struct Patch {
    offset: u64,
    csize: u64,
    usize: u64,
    crc: u32,
    name_len: u16,
    zip64_local: bool,
}

pub struct ZipArchive {
    pipe: Option<Pipeline<EntryDeflate, Mark, ()>>,
    path: PathBuf,
    symlinks: bool,
}

impl ZipArchive {
    pub fn new(
        file: File,
        path: &Path,
        level: u32,
        symlinks: bool,
        zip64: bool,
        threads: usize,
        cancel: &Cancel,
    ) -> ZipArchive {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let pipe = Pipeline::new(EntryDeflate { level }, threads, cancel.clone(), move |rx| {
            write_zip(file, &dir, rx, zip64)
        });
        ZipArchive {
            pipe: Some(pipe),
            path: path.to_path_buf(),
            symlinks,
        }
    }

    fn io(&self, e: io::Error) -> Error {
        if e.to_string() == ZIP64_DISABLED {
            return Error::Format(ZIP64_DISABLED.into());
        }
        Error::io(self.path.clone(), e)
    }

    fn pipe(&self) -> &Pipeline<EntryDeflate, Mark, ()> {
        self.pipe.as_ref().expect("archive open")
    }

    fn entry(
        &mut self,
        meta: &Meta,
        external: u32,
        size: u64,
        stored: bool,
        body: &mut BodyFn<'_>,
    ) -> Result<()> {
        let begin = Begin {
            name: meta.path.clone(),
            external,
            mtime: meta.mtime,
            zip64_local: size >= ZIP64_LOCAL_AT,
            stored,
        };
        self.pipe()
            .mark(Mark::Begin(begin))
            .map_err(|e| self.io(e))?;
        let mut block: Vec<u8> = self.pipe().buffer(GZIP_BLOCK);
        body(&mut |mut chunk: &[u8]| {
            while !chunk.is_empty() {
                let n = (GZIP_BLOCK - block.len()).min(chunk.len());
                block.extend_from_slice(&chunk[..n]);
                chunk = &chunk[n..];
                if block.len() == GZIP_BLOCK {
                    let next = self.pipe().buffer(GZIP_BLOCK);
                    let full = std::mem::replace(&mut block, next);
                    self.pipe().submit(full).map_err(|e| self.io(e))?;
                }
            }
            Ok(())
        })?;
        // A partial block ends the entry's stream itself; otherwise End closes it.
        let closed = !block.is_empty() && !stored;
        if closed {
            self.pipe()
                .submit_block(block, true)
                .map_err(|e| self.io(e))?;
        }
        self.pipe()
            .mark(Mark::End { closed })
            .map_err(|e| self.io(e))
    }
}

impl Archive for ZipArchive {
    fn file(&mut self, meta: &Meta, body: &Body, _origin: Origin<'_>) -> Result<()> {
        let external = (S_IFREG | (meta.mode & 0o7777)) << 16;
        self.entry(meta, external, body.len(), false, &mut |sink| {
            body.write_to(sink)
        })
    }

    fn symlink(&mut self, meta: &Meta, target: &[u8]) -> Result<()> {
        let external = (S_IFLNK | 0o777) << 16;
        let target = target.to_vec();
        self.entry(meta, external, target.len() as u64, false, &mut |sink| {
            sink(&target)
        })
    }

    fn hardlink(&mut self, _meta: &Meta, _to: &[u8]) -> Result<()> {
        Err(Error::Invalid(
            "zip archives cannot store hard links".into(),
        ))
    }

    fn dir(&mut self, meta: &Meta) -> Result<()> {
        let mut m = meta.clone();
        if !m.path.ends_with(b"/") {
            m.path.push(b'/');
        }
        let external = ((S_IFDIR | (meta.mode & 0o7777)) << 16) | 0x10;
        self.entry(&m, external, 0, true, &mut |_| Ok(()))
    }

    fn supports_hardlinks(&self) -> bool {
        false
    }

    fn stores_symlinks(&self) -> bool {
        self.symlinks
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let pipe = self.pipe.take().expect("archive open");
        pipe.finish().map_err(|e| self.io(e))
    }
}

/// The output thread: headers, compressed blocks and the central directory, in order.
fn write_zip(
    file: File,
    dir: &Path,
    rx: &crossbeam_channel::Receiver<Ticket<Block, Mark>>,
    zip64: bool,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    // Unnamed (or unlinked at once): nothing is left behind whatever happens.
    let mut central = BufWriter::with_capacity(1 << 16, tempfile::tempfile_in(dir)?);
    let mut cd_size = 0u64;
    let mut entries: Vec<Patch> = Vec::new();
    let mut current: Option<(Central, crc32fast::Hasher)> = None;
    let need64 = |what: bool| -> io::Result<()> {
        if what && !zip64 {
            Err(io::Error::other(ZIP64_DISABLED))
        } else {
            Ok(())
        }
    };
    for ticket in rx {
        match ticket {
            Ticket::Mark(Mark::Begin(begin)) => {
                need64(begin.zip64_local || offset > U32_MAX)?;
                let header = local_header(&begin);
                out.write_all(&header)?;
                let c = Central {
                    begin,
                    offset,
                    crc: 0,
                    csize: 0,
                    usize: 0,
                };
                offset += header.len() as u64;
                current = Some((c, crc32fast::Hasher::new()));
            }
            Ticket::Block(r) => {
                let b = wait(r)?;
                let (c, crc) = current.as_mut().expect("block inside an entry");
                out.write_all(&b.bytes)?;
                offset += b.bytes.len() as u64;
                c.csize += b.bytes.len() as u64;
                crate::buffers::give(b.bytes);
                c.usize += b.len;
                crc.combine(&crc32fast::Hasher::new_with_initial_len(b.crc, b.len));
            }
            Ticket::Mark(Mark::End { closed }) => {
                let (mut c, crc) = current.take().expect("entry begun");
                if !c.begin.stored && !closed {
                    // Close the deflate stream with an empty final block.
                    out.write_all(&[0x03, 0x00])?;
                    offset += 2;
                    c.csize += 2;
                }
                c.crc = crc.finalize();
                need64(c.csize > U32_MAX || c.usize > U32_MAX)?;
                if !c.begin.zip64_local && (c.csize > U32_MAX || c.usize > U32_MAX) {
                    return Err(io::Error::other(format!(
                        "{}: compressed past 4 GiB without a ZIP64 local header",
                        String::from_utf8_lossy(&c.begin.name)
                    )));
                }
                let rec = central_record(&c);
                central.write_all(&rec)?;
                cd_size += rec.len() as u64;
                entries.push(Patch {
                    offset: c.offset,
                    csize: c.csize,
                    usize: c.usize,
                    crc: c.crc,
                    name_len: c.begin.name.len() as u16,
                    zip64_local: c.begin.zip64_local,
                });
            }
        }
    }
    let cd_start = offset;
    append_spilled(central, &mut out, cd_size)?;
    offset += cd_size;
    let count = entries.len() as u64;
    let needs64 = count >= 0xFFFF || cd_start > U32_MAX || cd_size > U32_MAX;
    need64(needs64)?;
    out.write_all(&end_records(count, cd_start, cd_size, offset, needs64))?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    patch_local_headers(&file, &entries)
}

/// Copy the central directory, spilled to a temporary file while entries were written,
/// after them.
fn append_spilled(
    central: BufWriter<File>,
    out: &mut BufWriter<File>,
    cd_size: u64,
) -> io::Result<()> {
    let mut central = central.into_inner().map_err(|e| e.into_error())?;
    central.rewind()?;
    if io::copy(&mut central, out)? != cd_size {
        return Err(io::Error::other(
            "zip: the spilled central directory came back short",
        ));
    }
    Ok(())
}

/// The records after the central directory: ZIP64's end record and locator when
/// `zip64` (found at `end_at`), then the classic end record, its fields saturated.
fn end_records(count: u64, cd_start: u64, cd_size: u64, end_at: u64, zip64: bool) -> Vec<u8> {
    let mut r = Vec::new();
    if zip64 {
        r.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        r.extend_from_slice(&44u64.to_le_bytes());
        r.extend_from_slice(&(3u16 << 8 | 45).to_le_bytes());
        r.extend_from_slice(&45u16.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&count.to_le_bytes());
        r.extend_from_slice(&count.to_le_bytes());
        r.extend_from_slice(&cd_size.to_le_bytes());
        r.extend_from_slice(&cd_start.to_le_bytes());
        r.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&end_at.to_le_bytes());
        r.extend_from_slice(&1u32.to_le_bytes());
    }
    r.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    r.extend_from_slice(&(count.min(0xFFFF) as u16).to_le_bytes());
    r.extend_from_slice(&(count.min(0xFFFF) as u16).to_le_bytes());
    r.extend_from_slice(&(cd_size.min(U32_MAX) as u32).to_le_bytes());
    r.extend_from_slice(&(cd_start.min(U32_MAX) as u32).to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    r
}

/// Fill in each local header's CRC and sizes, known only once its data is written.
fn patch_local_headers(file: &File, entries: &[Patch]) -> io::Result<()> {
    for c in entries {
        let mut patch = Vec::with_capacity(12);
        patch.extend_from_slice(&c.crc.to_le_bytes());
        if c.zip64_local {
            patch.extend_from_slice(&U32_MAX.to_le_bytes()[..4]);
            patch.extend_from_slice(&U32_MAX.to_le_bytes()[..4]);
            crate::host::write_all_at(file, &patch, c.offset + 14)?;
            let mut ext = Vec::with_capacity(16);
            ext.extend_from_slice(&c.usize.to_le_bytes());
            ext.extend_from_slice(&c.csize.to_le_bytes());
            let extra_at = c.offset + 30 + c.name_len as u64 + 4;
            crate::host::write_all_at(file, &ext, extra_at)?;
        } else {
            patch.extend_from_slice(&(c.csize as u32).to_le_bytes());
            patch.extend_from_slice(&(c.usize as u32).to_le_bytes());
            crate::host::write_all_at(file, &patch, c.offset + 14)?;
        }
    }
    Ok(())
}

fn flags(name: &[u8]) -> u16 {
    // Bit 11: the name is UTF-8. Not claimed for bytes that are not: readers that trust
    // it (Python's zipfile) then refuse the whole archive.
    if name.is_ascii() || std::str::from_utf8(name).is_err() {
        0
    } else {
        1 << 11
    }
}

/// The "extended timestamp" extra field: the exact mtime in UTC, so extraction restores
/// the second Python's .pyc validation compares against, in any time zone.
fn ut_extra(mtime: i64) -> [u8; 9] {
    let mut e = [0u8; 9];
    e[..2].copy_from_slice(&0x5455u16.to_le_bytes());
    e[2..4].copy_from_slice(&5u16.to_le_bytes());
    e[4] = 1;
    e[5..].copy_from_slice(&(mtime.clamp(0, i32::MAX as i64) as u32).to_le_bytes());
    e
}

fn local_header(b: &Begin) -> Vec<u8> {
    let (time, date) = dos_time(b.mtime);
    let mut h = Vec::with_capacity(30 + b.name.len() + 29);
    let mut extra = Vec::new();
    if b.zip64_local {
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&16u16.to_le_bytes());
        extra.extend_from_slice(&[0u8; 16]);
    }
    extra.extend_from_slice(&ut_extra(b.mtime));
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&(if b.zip64_local { 45u16 } else { 20 }).to_le_bytes());
    h.extend_from_slice(&flags(&b.name).to_le_bytes());
    h.extend_from_slice(&(if b.stored { 0u16 } else { 8 }).to_le_bytes());
    h.extend_from_slice(&time.to_le_bytes());
    h.extend_from_slice(&date.to_le_bytes());
    h.extend_from_slice(&[0u8; 12]); // crc, sizes: patched at the end
    h.extend_from_slice(&(b.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    h.extend_from_slice(&b.name);
    h.extend_from_slice(&extra);
    h
}

fn central_record(c: &Central) -> Vec<u8> {
    let b = &c.begin;
    let (time, date) = dos_time(b.mtime);
    let mut z64 = Vec::new();
    if c.usize > U32_MAX {
        z64.extend_from_slice(&c.usize.to_le_bytes());
    }
    if c.csize > U32_MAX {
        z64.extend_from_slice(&c.csize.to_le_bytes());
    }
    if c.offset > U32_MAX {
        z64.extend_from_slice(&c.offset.to_le_bytes());
    }
    let mut extra = Vec::new();
    if !z64.is_empty() {
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&(z64.len() as u16).to_le_bytes());
        extra.extend_from_slice(&z64);
    }
    extra.extend_from_slice(&ut_extra(b.mtime));
    let version: u16 = if z64.is_empty() && !b.zip64_local {
        20
    } else {
        45
    };
    let mut r = Vec::with_capacity(46 + b.name.len() + extra.len());
    r.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    r.extend_from_slice(&(3u16 << 8 | version).to_le_bytes());
    r.extend_from_slice(&version.to_le_bytes());
    r.extend_from_slice(&flags(&b.name).to_le_bytes());
    r.extend_from_slice(&(if b.stored { 0u16 } else { 8 }).to_le_bytes());
    r.extend_from_slice(&time.to_le_bytes());
    r.extend_from_slice(&date.to_le_bytes());
    r.extend_from_slice(&c.crc.to_le_bytes());
    r.extend_from_slice(&(c.csize.min(U32_MAX) as u32).to_le_bytes());
    r.extend_from_slice(&(c.usize.min(U32_MAX) as u32).to_le_bytes());
    r.extend_from_slice(&(b.name.len() as u16).to_le_bytes());
    r.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes()); // comment
    r.extend_from_slice(&0u16.to_le_bytes()); // disk
    r.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    r.extend_from_slice(&b.external.to_le_bytes());
    r.extend_from_slice(&(c.offset.min(U32_MAX) as u32).to_le_bytes());
    r.extend_from_slice(&b.name);
    r.extend_from_slice(&extra);
    r
}

/// MS-DOS time and date of a Unix time, in UTC (the UT extra field carries the exact value).
fn dos_time(mtime: i64) -> (u16, u16) {
    const MIN: i64 = 315_532_800; // 1980-01-01, the format's epoch
    let t = mtime.max(MIN);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).min(2107);
    let time = (((secs / 3600) << 11) | ((secs % 3600 / 60) << 5) | ((secs % 60) / 2)) as u16;
    let date = (((year - 1980) << 9) | (month << 5) | day) as u16;
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_dates() {
        // 2021-03-04 05:06:08 UTC
        let (t, d) = dos_time(1_614_834_368);
        assert_eq!(d, (41 << 9) | (3 << 5) | 4);
        assert_eq!(t, (5 << 11) | (6 << 5) | 4);
        assert_eq!(dos_time(0).1, (1 << 5) | 1);
    }
}
