//! Where the frames of our tar.zst start: zstd's seekable format, written after the frames
//! so that an unpacker can decode them on every core.
//!
//! Our zstd writer compresses the tar stream in independent frames (see `zstd.rs`). A zstd
//! file may hold any number of frames, and every reader decodes them one after the other
//! and skips "skippable" frames unread (RFC 8878, 3.1.2). The seekable format of zstd's
//! `contrib/seekable_format` puts a table of the frames' sizes in a skippable frame at the
//! end of the file, and so do we: `zstd -d`, `zstd -t`, `tar --zstd`, Python's `zstandard`
//! and the `zstd` crate read the archive as one stream, and tools that know the seekable
//! format can seek in it. The table is a function of the compressed frames alone, so
//! archives stay reproducible.
//!
//! Before the table comes a skippable frame of our own saying where the archive's
//! generated files begin (the seek table has no room for it); the table lists it as a
//! frame that decompresses to nothing, as the format asks of skippable frames.
//!
//! ```text
//! zstd frames                each compressed on its own, with content size and checksum
//! u32 0x184D2A5C             our skippable frame:
//! u32 16                       its length
//! "CPZS" u8 version (1)        u8 flags (bit 0: a tail offset is recorded)  u16 0
//! u64 tail offset              where the generated files begin, uncompressed
//! u32 0x184D2A5E             the seek table:
//! u32 length                   12 bytes a frame, then the footer (9 bytes)
//! per frame, ours included:    u32 compressed size, u32 decompressed size,
//!                              u32 checksum (the low 32 bits of XXH64, as in the frame)
//! u32 frame count  u8 0x80 (checksums)  u32 0x8F92EAB1
//! ```
//!
//! All fields little-endian. A reader finds the table from the end of the file alone.

use crate::host;
use crate::le::{u32_at, u64_at};
use std::fs::File;
use std::io;

/// The magic of a skippable frame is `0x184D2A50..=0x184D2A5F`.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE: u32 = 0x184D_2A50;
const SEEK_TABLE: u32 = 0x184D_2A5E;
const SEEKABLE_FOOTER: u32 = 0x8F92_EAB1;
const CHECKSUMS: u8 = 0x80;
/// Bits 6-2 of the descriptor: a reader must not interpret a table with any set.
const RESERVED: u8 = 0x7C;
const FOOTER: usize = 9;
/// The low 32 bits of XXH64 of nothing: the checksum of a frame that decompresses to
/// nothing.
const EMPTY_CHECKSUM: u32 = 0x51D8_E999;

const OURS: u32 = 0x184D_2A5C;
const OURS_MAGIC: &[u8; 4] = b"CPZS";
const VERSION: u8 = 1;
/// Our skippable frame, header included.
const OURS_LEN: usize = 8 + 16;

/// Longest frame (uncompressed) decoded in one piece: a table with larger frames is read
/// as one stream.
pub const MAX_FRAME: u64 = 64 << 20;
/// Most frames a table may list before it is taken for damaged: 2^26 frames of 8 MiB
/// are 512 TiB.
const MAX_FRAMES: u64 = 1 << 26;

/// A zstd frame of the archive, as the table gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame starts in the file.
    pub at: u64,
    pub csize: u32,
    pub dsize: u32,
    /// The low 32 bits of the XXH64 of its content, when the table records it.
    pub checksum: Option<u32>,
}

/// What the seek table says about a zstd file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeekTable {
    /// Every frame the table lists, skippable ones included, in file order.
    pub frames: Vec<Frame>,
    /// Uncompressed size: the sum of the frames' sizes.
    pub total: u64,
    /// Where the archive's generated files begin (uncompressed), when recorded.
    pub tail: Option<u64>,
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("its seek table (at its end) is damaged: {what}"),
    )
}

/// One frame's entry: compressed size, decompressed size, checksum.
pub type Entry = (u32, u32, u32);

/// Our skippable frame, then the seek table, for the data frames `entries`; `tail` is
/// where the generated files begin.
pub fn trailer(entries: &[Entry], tail: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(OURS_LEN + 8 + 12 * (entries.len() + 1) + FOOTER);
    out.extend_from_slice(&OURS.to_le_bytes());
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(OURS_MAGIC);
    out.push(VERSION);
    out.push(tail.is_some() as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&tail.unwrap_or(0).to_le_bytes());
    debug_assert_eq!(out.len(), OURS_LEN);
    let count = entries.len() + 1;
    out.extend_from_slice(&SEEK_TABLE.to_le_bytes());
    out.extend_from_slice(&((12 * count + FOOTER) as u32).to_le_bytes());
    let ours = (OURS_LEN as u32, 0, EMPTY_CHECKSUM);
    for (c, d, sum) in entries.iter().chain(std::iter::once(&ours)) {
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&sum.to_le_bytes());
    }
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.push(CHECKSUMS);
    out.extend_from_slice(&SEEKABLE_FOOTER.to_le_bytes());
    out
}

/// Whether `magic` starts a skippable frame.
pub fn is_skippable(magic: u32) -> bool {
    magic & SKIPPABLE_MASK == SKIPPABLE
}

impl SeekTable {
    /// The seek table at the end of `file` (`len` bytes), if it ends with one that this
    /// reader can use: None when it ends otherwise, or its table is of a kind we do not
    /// read in parallel (reserved bits, frames larger than [`MAX_FRAME`]), which leaves
    /// the file to be read as one stream. A table that is there but does not describe
    /// the file is an error: the archive is damaged.
    pub fn find(file: &File, len: u64) -> io::Result<Option<SeekTable>> {
        if len < (8 + FOOTER) as u64 {
            return Ok(None);
        }
        let mut footer = [0u8; FOOTER];
        host::read_exact_at(file, &mut footer, len - FOOTER as u64)?;
        if u32_at(&footer, 5) != SEEKABLE_FOOTER {
            return Ok(None);
        }
        let count = u32_at(&footer, 0) as u64;
        let descriptor = footer[4];
        if descriptor & RESERVED != 0 {
            return Ok(None);
        }
        let size = if descriptor & CHECKSUMS != 0 { 12 } else { 8 };
        if count > MAX_FRAMES || count * size + (8 + FOOTER) as u64 > len {
            return Err(damaged("it lists more frames than the file holds"));
        }
        let table_len = (count * size) as usize + 8 + FOOTER;
        let mut table = vec![0u8; table_len];
        host::read_exact_at(file, &mut table, len - table_len as u64)?;
        if u32_at(&table, 0) != SEEK_TABLE || u32_at(&table, 4) as usize != table_len - 8 {
            return Err(damaged("its frame header does not match its frame count"));
        }
        let mut frames = Vec::with_capacity(count as usize);
        let mut at = 0u64;
        let mut total = 0u64;
        for i in 0..count as usize {
            let e = &table[8 + i * size as usize..];
            let f = Frame {
                at,
                csize: u32_at(e, 0),
                dsize: u32_at(e, 4),
                checksum: (size == 12).then(|| u32_at(e, 8)),
            };
            at += f.csize as u64;
            total += f.dsize as u64;
            frames.push(f);
        }
        if at + table_len as u64 != len {
            return Err(damaged("its frames do not add up to the file's length"));
        }
        if frames.iter().any(|f| f.csize == 0) {
            return Err(damaged("it lists an empty frame"));
        }
        let tail = match frames.last() {
            Some(last) if last.csize as usize == OURS_LEN && last.dsize == 0 => {
                let mut ours = [0u8; OURS_LEN];
                host::read_exact_at(file, &mut ours, last.at)?;
                Self::tail_of(&ours, total)?
            }
            _ => None,
        };
        if frames.iter().any(|f| f.dsize as u64 > MAX_FRAME) {
            return Ok(None);
        }
        Ok(Some(SeekTable {
            frames,
            total,
            tail,
        }))
    }

    /// The tail offset in our skippable frame `ours`, if it is ours and records one.
    fn tail_of(ours: &[u8], total: u64) -> io::Result<Option<u64>> {
        if u32_at(ours, 0) != OURS || u32_at(ours, 4) != 16 || &ours[8..12] != OURS_MAGIC {
            return Ok(None);
        }
        if ours[12] != VERSION || ours[13] & 1 == 0 {
            return Ok(None);
        }
        let tail = u64_at(ours, 16);
        if tail > total {
            return Err(damaged("its tail lies past the end of the data"));
        }
        Ok(Some(tail))
    }

    /// The index of the frame holding uncompressed offset `at` (the last frame if none).
    pub fn frame_at(&self, at: u64) -> (usize, u64) {
        let mut start = 0u64;
        for (i, f) in self.frames.iter().enumerate() {
            if at < start + f.dsize as u64 {
                return (i, start);
            }
            start += f.dsize as u64;
        }
        (self.frames.len(), start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        (f, bytes.len() as u64)
    }

    fn sample() -> Vec<u8> {
        // Three frames of made-up bytes (the table does not look inside them).
        let mut file = vec![1u8; 100];
        file.extend(vec![2u8; 50]);
        file.extend(vec![3u8; 7]);
        file.extend(trailer(
            &[(100, 1000, 11), (50, 1000, 22), (7, 10, 33)],
            Some(2005),
        ));
        file
    }

    #[test]
    fn a_table_reads_back_from_the_end_of_a_file() {
        let file = sample();
        let (f, len) = file_of(&file);
        let t = SeekTable::find(f.as_file(), len).unwrap().unwrap();
        assert_eq!(t.total, 2010);
        assert_eq!(t.tail, Some(2005));
        let starts: Vec<u64> = t.frames.iter().map(|f| f.at).collect();
        assert_eq!(starts, [0, 100, 150, 157]);
        assert_eq!(t.frames[3].dsize, 0);
        assert_eq!(t.frames[1].checksum, Some(22));
        assert_eq!(t.frame_at(0), (0, 0));
        assert_eq!(t.frame_at(2005), (2, 2000));
        assert_eq!(t.frame_at(2010), (4, 2010));
        // Without a tail.
        let mut plain = vec![9u8; 10];
        plain.extend(trailer(&[(10, 20, 0)], None));
        let (f, len) = file_of(&plain);
        assert_eq!(
            SeekTable::find(f.as_file(), len).unwrap().unwrap().tail,
            None
        );
    }

    #[test]
    fn a_file_without_a_table_has_none_and_a_damaged_table_is_an_error() {
        let file = sample();
        // Cut anywhere: the footer is gone.
        for cut in [1, 5, 9, 30] {
            let (f, len) = file_of(&file[..file.len() - cut]);
            assert!(
                SeekTable::find(f.as_file(), len).unwrap().is_none(),
                "{cut}"
            );
        }
        let n = file.len();
        let entries = n - FOOTER - 12 * 4;
        // A frame's size, the frame count, the table's length, the tail.
        for (at, what) in [
            (entries, "add up"),
            (n - FOOTER, "lists more"),
            (entries - 4, "frame count"),
            (entries - 8 - OURS_LEN + 17, "tail"),
        ] {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            let (f, len) = file_of(&bad);
            let err = SeekTable::find(f.as_file(), len).unwrap_err();
            assert!(err.to_string().contains(what), "{at}: {err}");
        }
        let mut extra = vec![0u8];
        extra.extend(&file);
        let (f, len) = file_of(&extra);
        assert!(SeekTable::find(f.as_file(), len).is_err());
        // Reserved bits: not ours to read in parallel.
        let mut reserved = file.clone();
        reserved[n - 5] |= 0x04;
        let (f, len) = file_of(&reserved);
        assert!(SeekTable::find(f.as_file(), len).unwrap().is_none());
    }
}
