//! Where the independently compressed blocks of our gzip streams start, recorded after the
//! stream so that our own unpacker can inflate them on every core.
//!
//! A gzip stream may hold several members, and every reader decompresses them one after
//! the other (RFC 1952, 2.2). The index is an extra member that decompresses to nothing:
//! its header's "extra field" (FEXTRA, which every reader skips) carries the index, its
//! deflate data is a single empty block. So `gzip -t`, `gzip -dc | tar -x`, `tar -xzf`,
//! Python's `tarfile` and `gzip` modules and Java's `GZIPInputStream` read the archive as
//! they always did, and readers that stop after the first member lose nothing. The index
//! is a function of the compressed data alone, so archives stay reproducible.
//!
//! Layout of the extra subfield `CP` (little-endian):
//!
//! ```text
//! u8  version (1)          u8  flags (bit 0: a tail offset is recorded)
//! u32 block size           u32 blocks per recorded chunk (the stride)
//! u64 uncompressed size    u64 tail offset (where the archive's generated files begin)
//! u64 length of the data member (header to trailer)
//! u32 chunk count          u64 x count: where each chunk starts, from the member's start
//! u32 length of this index member                    "CPGZ"
//! ```
//!
//! The last eight bytes of the subfield come just before the empty block and trailer that
//! end the file, so a reader finds the index from the end of the file alone, and the data
//! member from the index (an installer puts a script before it).

use crate::le::{u16_at, u32_at, u64_at};

use std::io;

/// The bytes that end every index member: an empty final block, CRC 0, size 0.
const END: [u8; 10] = [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
const MAGIC: &[u8; 4] = b"CPGZ";
const VERSION: u8 = 1;
/// Fixed fields before the chunk starts.
const FIXED: usize = 1 + 1 + 4 + 4 + 8 + 8 + 8 + 4;
/// Chunks recorded at most: enough to keep any number of cores busy, and the subfield
/// within the 65,535 bytes a gzip extra field may hold.
pub const MAX_CHUNKS: usize = 4096;
/// Header (10), XLEN (2), subfield id and length (4).
const HEAD: usize = 16;

/// What the index says about a gzip stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockIndex {
    /// Uncompressed bytes per block; every block but the last holds exactly this many.
    pub block: u64,
    /// Blocks per chunk: chunk `i` starts at uncompressed offset `i * stride * block`.
    pub stride: u64,
    pub total: u64,
    /// Where the archive's generated files begin (uncompressed), when recorded.
    pub tail: Option<u64>,
    /// Length of the data member.
    pub member_len: u64,
    /// Where each chunk's deflate data starts, from the start of the data member.
    pub starts: Vec<u64>,
}

impl BlockIndex {
    /// The index of a stream whose blocks (each `block` bytes uncompressed but the last)
    /// start at `block_starts`.
    pub fn new(
        block: u64,
        block_starts: &[u64],
        total: u64,
        tail: Option<u64>,
        member_len: u64,
    ) -> BlockIndex {
        let stride = block_starts.len().div_ceil(MAX_CHUNKS).max(1);
        BlockIndex {
            block,
            stride: stride as u64,
            total,
            tail,
            member_len,
            starts: block_starts.iter().step_by(stride).copied().collect(),
        }
    }

    /// Uncompressed bytes per chunk.
    pub fn chunk_len(&self) -> u64 {
        self.block * self.stride
    }

    /// The index as a gzip member.
    pub fn member(&self) -> Vec<u8> {
        let sub_len = FIXED + 8 * self.starts.len() + 8;
        let total = HEAD + sub_len + END.len();
        let mut m = Vec::with_capacity(total);
        // Magic, deflate, FEXTRA, mtime 0, no extra flags, OS unknown: as the data member.
        m.extend_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff]);
        m.extend_from_slice(&((4 + sub_len) as u16).to_le_bytes());
        m.extend_from_slice(b"CP");
        m.extend_from_slice(&(sub_len as u16).to_le_bytes());
        m.push(VERSION);
        m.push(self.tail.is_some() as u8);
        m.extend_from_slice(&(self.block as u32).to_le_bytes());
        m.extend_from_slice(&(self.stride as u32).to_le_bytes());
        m.extend_from_slice(&self.total.to_le_bytes());
        m.extend_from_slice(&self.tail.unwrap_or(0).to_le_bytes());
        m.extend_from_slice(&self.member_len.to_le_bytes());
        m.extend_from_slice(&(self.starts.len() as u32).to_le_bytes());
        for s in &self.starts {
            m.extend_from_slice(&s.to_le_bytes());
        }
        m.extend_from_slice(&(total as u32).to_le_bytes());
        m.extend_from_slice(MAGIC);
        m.extend_from_slice(&END);
        debug_assert_eq!(m.len(), total);
        m
    }

    /// The index at the end of `tail` (the last bytes of a file of `file_len` bytes), with
    /// the offset of the data member in the file; None when the file ends otherwise.
    /// An index that is there but inconsistent is an error: the archive is damaged.
    pub fn find(tail: &[u8], file_len: u64) -> io::Result<Option<(BlockIndex, u64)>> {
        let n = tail.len();
        if n < HEAD + FIXED + 8 + END.len() || tail[n - END.len()..] != END {
            return Ok(None);
        }
        let foot = n - END.len() - 8;
        if &tail[foot + 4..foot + 8] != MAGIC {
            return Ok(None);
        }
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let member_len = u32_at(tail, foot) as usize;
        if member_len > n || member_len < HEAD + FIXED + 8 + END.len() {
            return Err(bad("the block index at its end is damaged"));
        }
        let m = &tail[n - member_len..];
        let sub_len = member_len - HEAD - END.len();
        if m[..4] != [0x1f, 0x8b, 8, 4]
            || u16_at(m, 10) as usize != 4 + sub_len
            || &m[12..14] != b"CP"
            || u16_at(m, 14) as usize != sub_len
        {
            return Err(bad("the block index at its end is damaged"));
        }
        let s = &m[HEAD..HEAD + sub_len];
        if s[0] != VERSION {
            return Err(bad("its block index is of a later version of conda-pack"));
        }
        let count = u32_at(s, 34) as usize;
        if FIXED + 8 * count + 8 != sub_len || count == 0 {
            return Err(bad("the block index at its end is damaged"));
        }
        let index = BlockIndex {
            block: u32_at(s, 2) as u64,
            stride: u32_at(s, 6) as u64,
            total: u64_at(s, 10),
            tail: (s[1] & 1 == 1).then(|| u64_at(s, 18)),
            member_len: u64_at(s, 26),
            starts: (0..count).map(|i| u64_at(s, FIXED + 8 * i)).collect(),
        };
        let chunks = index.total.div_ceil(index.chunk_len().max(1)).max(1);
        let member_at = (file_len - member_len as u64).checked_sub(index.member_len);
        let consistent = index.block > 0
            && index.stride > 0
            && chunks == count as u64
            && index.starts[0] == 10
            && index.starts.windows(2).all(|w| w[0] < w[1])
            && index.starts[count - 1] + 10 <= index.member_len
            && index.tail.is_none_or(|t| t <= index.total)
            && member_at.is_some();
        if !consistent {
            return Err(bad("the block index at its end is damaged"));
        }
        Ok(member_at.map(|at| (index, at)))
    }
}

/// Longest index member: what a reader must read from the end of a file to find one.
pub const MAX_MEMBER: usize = HEAD + FIXED + 8 * MAX_CHUNKS + 8 + END.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_reads_back_from_the_end_of_a_file() {
        let starts: Vec<u64> = (0..10_000u64).map(|i| 10 + i * 1000).collect();
        let total = 10_000 * (1 << 20) - 5;
        let idx = BlockIndex::new(1 << 20, &starts, total, Some(12345), 10_000_100);
        assert_eq!(idx.stride, 3);
        assert_eq!(idx.starts.len(), 3334);
        let mut file = vec![7u8; 99]; // a script before the data member
        file.extend(vec![0u8; idx.member_len as usize]);
        file.extend(idx.member());
        let (back, at) = BlockIndex::find(&file, file.len() as u64).unwrap().unwrap();
        assert_eq!(back, idx);
        assert_eq!(at, 99);
        // A file that ends otherwise has no index; a damaged one is an error.
        assert!(
            BlockIndex::find(&file[..file.len() - 1], file.len() as u64 - 1)
                .unwrap()
                .is_none()
        );
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 200] ^= 1; // the last chunk start
        assert!(BlockIndex::find(&bad, n as u64).is_err());
    }

    #[test]
    fn the_member_is_an_empty_gzip_member() {
        use std::io::Read;
        let idx = BlockIndex::new(1 << 20, &[10, 500], (1 << 20) + 3, None, 900);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&idx.member()[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
