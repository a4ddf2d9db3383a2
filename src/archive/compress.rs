//! The byte streams an archive is written into: plain, or compressed with several
//! threads. Every encoder gives the same bytes whatever the thread count, so archives are
//! reproducible across machines.

use super::blockindex::BlockIndex;
use super::blocks::{wait, Codec, Pipeline, Ticket};
use super::deflate;
use super::gather::GatherWriter;
use super::seektable;
use super::xz::XzWriter;
use super::zstd::{frame_size, Frames};
use crate::error::Cancel;
use std::fs::File;
use std::io::{self, BufWriter, Write};

/// Uncompressed bytes per parallel gzip block: large enough that starting each block with
/// an empty window costs little ratio (about 0.3%), small enough to keep every core busy.
pub const GZIP_BLOCK: usize = 1 << 20;
const OUT_BUFFER: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip(u32),
    Bzip2(u32),
    Xz(u32),
    Zstd(i32),
}

/// A compressed (or plain) byte stream into a file.
pub enum Encoder {
    Plain(GatherWriter),
    Blocks(BlockWriter),
    Xz(XzWriter),
}

impl Encoder {
    pub fn plain(file: File) -> Encoder {
        Encoder::Plain(GatherWriter::new(file))
    }

    /// `cancel` stops the compressors between blocks; an encoder cancelled is dropped,
    /// never finished.
    pub fn new(
        file: File,
        compression: Compression,
        threads: usize,
        cancel: &Cancel,
    ) -> io::Result<Encoder> {
        let threads = threads.max(1);
        // The plain stream buffers itself (it writes file buffers without copying them).
        let out = |file| BufWriter::with_capacity(OUT_BUFFER, file);
        let cancel = cancel.clone();
        Ok(match compression {
            Compression::None => Encoder::plain(file),
            Compression::Gzip(level) => {
                Encoder::Blocks(BlockWriter::gzip(out(file), level, threads, cancel))
            }
            Compression::Bzip2(level) => {
                Encoder::Blocks(BlockWriter::bzip2(out(file), level, threads, cancel))
            }
            Compression::Zstd(level) => {
                Encoder::Blocks(BlockWriter::zstd(out(file), level, threads, cancel))
            }
            Compression::Xz(level) => {
                Encoder::Xz(XzWriter::new(out(file), level, threads, cancel)?)
            }
        })
    }

    /// Note that the archive's generated files begin at uncompressed offset `at`: the
    /// gzip block index and the zstd seek table record it, so that an unpacker can read
    /// them first.
    pub fn mark_tail(&mut self, at: u64) -> io::Result<()> {
        match self {
            Encoder::Blocks(BlockWriter { kind, .. }) => match kind {
                BlockKind::Gzip(p) => p.mark(at),
                BlockKind::Zstd(p) => p.mark(at),
                BlockKind::Bzip2(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Flush everything and write the stream's trailer.
    pub fn finish(self) -> io::Result<()> {
        let mut file = match self {
            Encoder::Plain(w) => return w.into_inner()?.flush(),
            Encoder::Blocks(b) => b.finish()?,
            Encoder::Xz(e) => e.finish()?,
        };
        file.flush()
    }

    /// Write `bytes`, taking the buffer over: a plain stream writes it without copying;
    /// either way it goes back to the buffer pool.
    pub fn put_owned(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.put_owned(bytes),
            _ => {
                self.write_all(&bytes)?;
                crate::buffers::give(bytes);
                Ok(())
            }
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Blocks(b) => b.write(buf),
            Encoder::Xz(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(buf),
            Encoder::Blocks(b) => b.write_all(buf),
            Encoder::Xz(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw deflate of one block, ending on a byte boundary and not final, so blocks
/// concatenate into one deflate stream.
pub struct Deflate {
    pub level: u32,
}

pub struct Deflated {
    pub bytes: Vec<u8>,
    pub crc: u32,
    pub len: u64,
}

impl Codec for Deflate {
    type Out = Deflated;

    fn compress(&self, data: &[u8]) -> io::Result<Deflated> {
        Ok(Deflated {
            bytes: deflate::compress(self.level, data, false)?,
            crc: crc32fast::hash(data),
            len: data.len() as u64,
        })
    }
}

/// One complete bzip2 stream per block: bzip2 readers accept concatenated streams.
struct Bzip2Block {
    level: u32,
}

impl Codec for Bzip2Block {
    type Out = Vec<u8>;

    fn compress(&self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut enc = bzip2::write::BzEncoder::new(
            Vec::with_capacity(data.len() / 3),
            bzip2::Compression::new(self.level),
        );
        enc.write_all(data)?;
        enc.finish()
    }
}

enum BlockKind {
    /// Marks: where the archive's generated files begin (uncompressed), for the index.
    Gzip(Pipeline<Deflate, u64, BufWriter<File>>),
    Bzip2(Pipeline<Bzip2Block, (), BufWriter<File>>),
    /// Marks as for gzip, for the seek table.
    Zstd(Pipeline<Frames, u64, BufWriter<File>>),
}

/// A `Write` that cuts its input into blocks for a [`Pipeline`].
pub struct BlockWriter {
    kind: BlockKind,
    block: Vec<u8>,
    block_size: usize,
}

impl BlockWriter {
    fn gzip(out: BufWriter<File>, level: u32, threads: usize, cancel: Cancel) -> BlockWriter {
        let pipe = Pipeline::new(Deflate { level }, threads, cancel, move |rx| {
            let mut out = out;
            // Magic, deflate, no flags, mtime 0 (reproducible), no extra flags, OS unknown.
            out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            let mut crc = crc32fast::Hasher::new();
            let mut total = 0u64;
            let mut at = 10u64;
            let mut starts = Vec::new();
            let mut tail = None;
            for ticket in rx {
                match ticket {
                    Ticket::Block(r) => {
                        let d = wait(r)?;
                        starts.push(at);
                        at += d.bytes.len() as u64;
                        out.write_all(&d.bytes)?;
                        crc.combine(&crc32fast::Hasher::new_with_initial_len(d.crc, d.len));
                        total += d.len;
                        crate::buffers::give(d.bytes);
                    }
                    Ticket::Mark(t) => tail = Some(t),
                }
            }
            // An empty final block, then CRC-32 and the length mod 2^32.
            out.write_all(&[0x03, 0x00])?;
            out.write_all(&crc.finalize().to_le_bytes())?;
            out.write_all(&(total as u32).to_le_bytes())?;
            if !starts.is_empty() {
                let index = BlockIndex::new(GZIP_BLOCK as u64, &starts, total, tail, at + 10);
                out.write_all(&index.member())?;
            }
            Ok(out)
        });
        BlockWriter::with(BlockKind::Gzip(pipe), GZIP_BLOCK)
    }

    fn bzip2(out: BufWriter<File>, level: u32, threads: usize, cancel: Cancel) -> BlockWriter {
        let level = level.clamp(1, 9);
        let pipe = Pipeline::new(Bzip2Block { level }, threads, cancel, move |rx| {
            let mut out = out;
            for ticket in rx {
                if let Ticket::Block(r) = ticket {
                    out.write_all(&wait(r)?)?;
                }
            }
            Ok(out)
        });
        // A bzip2 block holds level x 100 kB; one stream per block wastes nothing.
        BlockWriter::with(BlockKind::Bzip2(pipe), level as usize * 100_000)
    }

    /// One zstd frame per block, then our skippable frame and the seek table.
    fn zstd(out: BufWriter<File>, level: i32, threads: usize, cancel: Cancel) -> BlockWriter {
        let frame = frame_size(level);
        let codec = Frames::new(level, cancel.clone(), threads + 2);
        let recycle = codec.recycler();
        // A frame keeps a worker busy for a while: about 16 MiB queued for the workers
        // keeps them busy (two frames at the fast levels, one above).
        let depth = (16 << 20) / frame;
        let pipe = Pipeline::with_depth(codec, threads, depth, cancel, move |rx| {
            let mut out = out;
            let mut entries = Vec::new();
            let mut tail = None;
            for ticket in rx {
                match ticket {
                    Ticket::Block(r) => {
                        let f = wait(r)?;
                        entries.push((f.bytes.len() as u32, f.len, f.checksum));
                        out.write_all(&f.bytes)?;
                        let _ = recycle.try_send(f.bytes);
                    }
                    Ticket::Mark(t) => tail = Some(t),
                }
            }
            out.write_all(&seektable::trailer(&entries, tail))?;
            Ok(out)
        });
        BlockWriter::with(BlockKind::Zstd(pipe), frame)
    }

    fn with(kind: BlockKind, block_size: usize) -> BlockWriter {
        BlockWriter {
            kind,
            block: Vec::with_capacity(block_size),
            block_size,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let next = match &self.kind {
            BlockKind::Gzip(p) => p.buffer(self.block_size),
            BlockKind::Bzip2(p) => p.buffer(self.block_size),
            BlockKind::Zstd(p) => p.buffer(self.block_size),
        };
        let block = std::mem::replace(&mut self.block, next);
        match &self.kind {
            BlockKind::Gzip(p) => p.submit(block),
            BlockKind::Bzip2(p) => p.submit(block),
            BlockKind::Zstd(p) => p.submit(block),
        }
    }

    fn finish(mut self) -> io::Result<BufWriter<File>> {
        if !self.block.is_empty() {
            self.submit()?;
        }
        match self.kind {
            BlockKind::Gzip(p) => p.finish(),
            BlockKind::Bzip2(p) => p.finish(),
            BlockKind::Zstd(p) => p.finish(),
        }
    }
}

impl Write for BlockWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == self.block_size {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(compression: Compression, threads: usize, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let cancel = Cancel::default();
        let mut enc =
            Encoder::new(File::create(&path).unwrap(), compression, threads, &cancel).unwrap();
        for chunk in data.chunks(70_000) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..400_000u32 {
            v.extend_from_slice(format!("line {i} of a conda environment {}\n", i % 97).as_bytes());
        }
        v
    }

    #[test]
    fn gzip_is_one_member_and_independent_of_threads() {
        let data = sample();
        let one = roundtrip(Compression::Gzip(4), 1, &data);
        let four = roundtrip(Compression::Gzip(4), 4, &data);
        assert_eq!(one, four);
        let mut d = flate2::read::GzDecoder::new(&one[..]);
        let mut back = Vec::new();
        d.read_to_end(&mut back).unwrap();
        // GzDecoder reads one member only: all the data came from the first member.
        assert_eq!(back, data);
    }

    #[test]
    fn bzip2_zstd_xz_roundtrip_and_are_reproducible() {
        let data = sample();
        for c in [
            Compression::Bzip2(9),
            Compression::Zstd(3),
            Compression::Xz(1),
        ] {
            let a = roundtrip(c, 1, &data);
            assert_eq!(a, roundtrip(c, 3, &data), "{c:?}");
            let back = match c {
                Compression::Bzip2(_) => {
                    let mut v = Vec::new();
                    bzip2::read::MultiBzDecoder::new(&a[..])
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
                Compression::Zstd(_) => zstd::decode_all(&a[..]).unwrap(),
                _ => {
                    let mut v = Vec::new();
                    liblzma::read::XzDecoder::new(&a[..])
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
            };
            assert_eq!(back, data, "{c:?}");
        }
    }

    /// Text with some variety, `len` bytes: several frames' worth compresses fast.
    fn long_sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 100);
        let mut i = 0u64;
        while v.len() < len {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            v.extend_from_slice(
                format!("{i} {x:x} lib/python3.12/site-packages/{}\n", x % 89).as_bytes(),
            );
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[test]
    fn zstd_is_independent_frames_then_a_seek_table_that_libzstd_reads() {
        let frame = frame_size(3);
        let data = long_sample(2 * frame + 12_345);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.zst");
        let encode = |threads| {
            let cancel = Cancel::default();
            let file = File::create(&path).unwrap();
            let mut enc = Encoder::new(file, Compression::Zstd(3), threads, &cancel).unwrap();
            enc.write_all(&data[..frame + 1000]).unwrap();
            enc.mark_tail(frame as u64 + 1000).unwrap();
            enc.write_all(&data[frame + 1000..]).unwrap();
            enc.finish().unwrap();
            std::fs::read(&path).unwrap()
        };
        let one = encode(1);
        let archive = encode(3);
        assert!(archive == one, "the archive depends on the thread count");

        // Our reading of the table: three frames, our skippable frame, the tail.
        let file = File::open(&path).unwrap();
        let table = seektable::SeekTable::find(&file, archive.len() as u64)
            .unwrap()
            .unwrap();
        let sizes: Vec<u32> = table.frames.iter().map(|f| f.dsize).collect();
        assert_eq!(sizes, [frame as u32, frame as u32, 12_345, 0]);
        assert_eq!(table.tail, Some(frame as u64 + 1000));
        assert_eq!(table.total, data.len() as u64);

        // libzstd's reader of the seekable format: the same frames, and it seeks.
        let mut s = zstd_safe::seekable::Seekable::create();
        s.init_buff(&archive).unwrap();
        assert_eq!(s.num_frames(), 4);
        for (i, f) in table.frames.iter().enumerate() {
            assert_eq!(s.frame_compressed_offset(i as u32).unwrap(), f.at);
            assert_eq!(
                s.frame_decompressed_size(i as u32).unwrap(),
                f.dsize as usize
            );
        }
        let at = frame as u64 - 500;
        let mut part = vec![0u8; 70_000];
        let n = s.decompress(&mut part[..], at).unwrap();
        assert_eq!(&part[..n], &data[at as usize..at as usize + n]);
        let mut whole = vec![0u8; data.len()];
        let mut done = 0;
        while done < whole.len() {
            done += s.decompress(&mut whole[done..], done as u64).unwrap();
        }
        assert!(whole == data);
        // And the zstd crate's streaming decoder reads it all as one stream.
        assert!(zstd::decode_all(&archive[..]).unwrap() == data);
    }

    #[test]
    fn a_cancelled_zstd_stream_stops_without_finishing_its_frames() {
        let dir = tempfile::tempdir().unwrap();
        // Minutes of work at level 22, in frames of 32 MiB that take many seconds each.
        let data = long_sample(40 << 20);
        // What is left after the flag is set is the slice in hand (see the codec's own
        // test): within the second a Ctrl-C is given. The flag is set once the worker has
        // set up its level-22 tables (~0.35 s, once per worker).
        let bound = std::time::Duration::from_secs(1);
        let took = crate::error::quickest_stop(bound, || {
            let cancel = Cancel::default();
            let file = File::create(dir.path().join("out.zst")).unwrap();
            let mut enc = Encoder::new(file, Compression::Zstd(22), 1, &cancel).unwrap();
            let stopper = cancel.after(1000);
            // The encoder is dropped before this returns: its workers are joined too.
            let result = (|| {
                enc.write_all(&data)?;
                enc.finish()
            })();
            let asked = stopper.join().unwrap();
            assert!(result.is_err());
            asked.elapsed()
        });
        assert!(took < bound, "{took:?}");
    }
}
