//! Archives to unpack: which format a file is (from its bytes, not its name), and its
//! tar stream, decompressed on every core where the archive says where its blocks start.

use super::tar::{Header, Input, Kind, TarError, TarReader};
use crate::archive::blockindex::{self, BlockIndex};
use crate::error::Cancel;
use crossbeam_channel::{bounded, Receiver};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Zip,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::Gzip => "tar.gz",
            Format::Bzip2 => "tar.bz2",
            Format::Xz => "tar.xz",
            Format::Zstd => "tar.zst",
            Format::Zip => "zip",
        }
    }
}

/// Bytes of compressed input an xz decoder may use for its threads before it falls
/// back to one.
const XZ_THREAD_MEMORY: u64 = 128 << 20;
/// Largest stretch of generated files read ahead of the rest.
const MAX_TAIL: u64 = 256 << 20;

/// An archive file opened for unpacking.
pub struct Archive {
    pub path: PathBuf,
    pub file: Arc<File>,
    pub len: u64,
    pub format: Format,
    /// Where the compressed stream starts (after an installer's script).
    pub start: u64,
    /// Our gzip block index, with where the data member starts.
    pub index: Option<BlockIndex>,
}

pub fn not_an_archive(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is not an archive conda-pack can unpack (tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip, or an installer conda-pack wrote)",
            path.display()
        ),
    )
}

impl Archive {
    pub fn open(path: &Path) -> io::Result<Archive> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let len = meta.len();
        let mut head = vec![0u8; 512.min(len as usize)];
        file.read_exact_at(&mut head, 0)?;
        let tail_len = (blockindex::MAX_MEMBER as u64).min(len);
        let mut tail = vec![0u8; tail_len as usize];
        file.read_exact_at(&mut tail, len - tail_len)?;
        let found = BlockIndex::find(&tail, len)?;
        let mut start = 0;
        let format = if head.starts_with(&[0x1f, 0x8b]) {
            Format::Gzip
        } else if head.starts_with(b"BZh") {
            Format::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Format::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Format::Zip
        } else if head.len() == 512 && looks_like_tar(&head) {
            Format::Tar
        } else if let Some((_, at)) = found.as_ref().filter(|_| head.starts_with(b"#!")) {
            // An installer: a script, then a gzip stream that ends with our index.
            start = *at;
            let mut magic = [0u8; 3];
            file.read_exact_at(&mut magic, start)?;
            if magic != [0x1f, 0x8b, 8] {
                return Err(not_an_archive(path));
            }
            Format::Gzip
        } else {
            return Err(not_an_archive(path));
        };
        let index = match (format, found) {
            (Format::Gzip, Some((idx, at))) if at == start => Some(idx),
            _ => None,
        };
        Ok(Archive {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len,
            format,
            start,
            index,
        })
    }

    /// The archive's tar stream, from its start. `consumed` counts the archive's bytes as
    /// they are read.
    pub fn tar_stream(
        &self,
        threads: usize,
        consumed: Arc<AtomicU64>,
        cancel: &Cancel,
    ) -> io::Result<Box<dyn Read + Send>> {
        let raw = || -> io::Result<Counting> {
            let mut f = self.file.try_clone()?;
            f.seek(SeekFrom::Start(self.start))?;
            Ok(Counting {
                inner: io::BufReader::with_capacity(1 << 20, f),
                consumed: Arc::clone(&consumed),
            })
        };
        Ok(match self.format {
            Format::Tar => Box::new(raw()?),
            Format::Gzip => match &self.index {
                Some(idx) => Box::new(ParallelInflate::new(
                    Arc::clone(&self.file),
                    idx.clone(),
                    self.start,
                    threads,
                    consumed,
                    cancel.clone(),
                )),
                None => Box::new(flate2::read::MultiGzDecoder::new(raw()?)),
            },
            Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(raw()?)),
            Format::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .threads(threads.max(1) as u32)
                    .memlimit_threading(XZ_THREAD_MEMORY)
                    .memlimit_stop(u64::MAX)
                    .decoder()
                    .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(raw()?, stream))
            }
            Format::Zstd => Box::new(zstd::stream::read::Decoder::new(raw()?)?),
            Format::Zip => return Err(io::Error::other("a zip archive has no tar stream")),
        })
    }

    /// The archive's generated files (conda-unpack among them), read before the rest when
    /// the archive says where they are: our indexed gzip streams, and plain tar (whose
    /// headers can be walked without reading what lies between them). None when they can
    /// only be met at the end.
    pub fn read_ahead(&self, cancel: &Cancel) -> io::Result<Option<Scripts>> {
        match self.format {
            Format::Tar => {
                let mut f = self.file.try_clone()?;
                f.seek(SeekFrom::Start(0))?;
                let input = SeekSkip(io::BufReader::with_capacity(64 << 10, f));
                collect_scripts(TarReader::new(input), cancel).map(Some)
            }
            Format::Gzip => {
                let Some(idx) = &self.index else {
                    return Ok(None);
                };
                let Some(tail) = idx.tail else {
                    return Ok(None);
                };
                let chunk = idx.chunk_len();
                let first = tail / chunk;
                if idx.total - first * chunk > MAX_TAIL {
                    return Ok(None);
                }
                let mut data = Vec::new();
                for i in first as usize..idx.starts.len() {
                    cancel.check_io()?;
                    let (c, _) = inflate_chunk(&self.file, idx, self.start, i)?;
                    data.extend_from_slice(&c);
                }
                let from = (tail - first * chunk) as usize;
                collect_scripts(TarReader::new(&data[from..]), cancel).map(Some)
            }
            Format::Zip => {
                // The central directory lists every entry: the scripts are read first.
                let mut found = Vec::new();
                for entry in super::zip::entries(&self.file, self.len)? {
                    cancel.check_io()?;
                    let Some(path) = super::names::member(&entry.name) else {
                        continue;
                    };
                    if entry.kind == Kind::File
                        && entry.usize <= 64 << 20
                        && super::write::is_unpack_script(&path)
                    {
                        let mut body = Vec::new();
                        super::zip::EntryReader::new(&self.file, &entry)?.read_to_end(&mut body)?;
                        found.push((path, body));
                    }
                }
                Ok(Some(found))
            }
            _ => Ok(None),
        }
    }
}

/// conda-unpack scripts found: `(member path, content)`.
pub type Scripts = Vec<(Vec<u8>, Vec<u8>)>;

/// A chunk inflated by a worker: its bytes, their CRC-32 and length.
type Inflated = io::Result<(Vec<u8>, u32, u64)>;

/// A tar's first block: a header whose checksum holds.
fn looks_like_tar(block: &[u8]) -> bool {
    TarReader::new(block).next().is_ok_and(|h| h.is_some()) || (block.iter().all(|&b| b == 0))
}

/// conda-unpack scripts among the members a reader yields.
fn collect_scripts<R: Input>(
    mut tar: TarReader<R>,
    cancel: &Cancel,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut found = Vec::new();
    loop {
        cancel.check_io()?;
        let h: Header = match tar.next() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(found),
            Err(TarError::Io(e)) => return Err(e),
            // Whatever is wrong is reported when the members are unpacked.
            Err(_) => return Ok(found),
        };
        if h.kind == Kind::File && h.size <= 64 << 20 {
            if let Some(path) = super::names::member(&h.path) {
                if super::write::is_unpack_script(&path) {
                    let mut body = Vec::new();
                    tar.read_all_content(&mut body)?;
                    found.push((path, body));
                }
            }
        }
    }
}

/// Skips by seeking, for walking a plain tar's headers.
struct SeekSkip(io::BufReader<File>);

impl Read for SeekSkip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Input for SeekSkip {
    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        self.0.seek_relative(n as i64)
    }
}

/// A reader that counts what it reads.
struct Counting {
    inner: io::BufReader<File>,
    consumed: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Inflate chunk `i` of an indexed stream: `(bytes, crc32)`.
fn inflate_chunk(
    file: &File,
    idx: &BlockIndex,
    start: u64,
    i: usize,
) -> io::Result<(Vec<u8>, u32)> {
    let chunk = idx.chunk_len();
    let from = idx.starts[i];
    let to = idx
        .starts
        .get(i + 1)
        .copied()
        .unwrap_or(idx.member_len - 10);
    let out_len = chunk.min(idx.total - i as u64 * chunk) as usize;
    let damaged = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "its compressed data is damaged (a block does not inflate to what the index says)",
        )
    };
    if to < from || to - from > 2 * chunk + (1 << 20) {
        return Err(damaged());
    }
    let n = (to - from) as usize;
    let mut input = crate::buffers::take(n + 2);
    input.resize(n, 0);
    file.read_exact_at(&mut input, start + from)?;
    // Each chunk ends on a sync flush; an empty final block makes it a whole stream.
    input.extend_from_slice(&[0x03, 0x00]);
    let mut out = crate::buffers::take(out_len + 1);
    let mut d = flate2::Decompress::new(false);
    let status = d
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Finish)
        .map_err(|_| damaged())?;
    crate::buffers::give(input);
    if status != flate2::Status::StreamEnd || out.len() != out_len || d.total_in() as usize != n + 2
    {
        return Err(damaged());
    }
    let crc = crc32fast::hash(&out);
    Ok((out, crc))
}

/// An indexed gzip stream inflated a chunk per worker, read back in order. The CRC and
/// length in the stream's trailer are checked at its end, as gzip checks them.
struct ParallelInflate {
    order: Receiver<Receiver<Inflated>>,
    current: Vec<u8>,
    pos: usize,
    crc: crc32fast::Hasher,
    total: u64,
    file: Arc<File>,
    trailer_at: u64,
    expected_total: u64,
    consumed: Arc<AtomicU64>,
    finished: bool,
}

impl ParallelInflate {
    fn new(
        file: Arc<File>,
        idx: BlockIndex,
        start: u64,
        threads: usize,
        consumed: Arc<AtomicU64>,
        cancel: Cancel,
    ) -> ParallelInflate {
        let threads = threads.max(1);
        let (order_tx, order) = bounded(threads * 2);
        let (jobs_tx, jobs) = bounded::<(
            usize,
            crossbeam_channel::Sender<io::Result<(Vec<u8>, u32, u64)>>,
        )>(threads * 2);
        let idx = Arc::new(idx);
        let count = idx.starts.len();
        std::thread::Builder::new()
            .name("conda-pack-inflate-order".into())
            .spawn(move || {
                for i in 0..count {
                    let (tx, rx) = bounded(1);
                    if order_tx.send(rx).is_err() || jobs_tx.send((i, tx)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn");
        for t in 0..threads {
            let (jobs, file, idx, cancel) = (
                jobs.clone(),
                Arc::clone(&file),
                Arc::clone(&idx),
                cancel.clone(),
            );
            std::thread::Builder::new()
                .name(format!("conda-pack-inflate-{t}"))
                .spawn(move || {
                    for (i, reply) in jobs {
                        let r = cancel
                            .check_io()
                            .and_then(|()| inflate_chunk(&file, &idx, start, i));
                        let span = idx.starts.get(i + 1).copied().unwrap_or(idx.member_len)
                            - idx.starts[i];
                        let _ = reply.send(r.map(|(b, c)| (b, c, span)));
                    }
                })
                .expect("spawn");
        }
        ParallelInflate {
            order,
            current: Vec::new(),
            pos: 0,
            crc: crc32fast::Hasher::new(),
            total: 0,
            trailer_at: start + idx.member_len - 8,
            expected_total: idx.total,
            file,
            consumed,
            finished: false,
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        let Ok(rx) = self.order.recv() else {
            if !self.finished {
                self.finished = true;
                self.check_trailer()?;
            }
            return Ok(false);
        };
        let (bytes, crc, span) = rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("an inflating thread stopped")))?;
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            crc,
            bytes.len() as u64,
        ));
        self.total += bytes.len() as u64;
        self.consumed.fetch_add(span, Ordering::Relaxed);
        crate::buffers::give(std::mem::replace(&mut self.current, bytes));
        self.pos = 0;
        Ok(true)
    }

    fn check_trailer(&self) -> io::Result<()> {
        let mut t = [0u8; 8];
        self.file.read_exact_at(&mut t, self.trailer_at)?;
        let crc = u32::from_le_bytes(t[..4].try_into().expect("4"));
        let len = u32::from_le_bytes(t[4..].try_into().expect("4"));
        if crc != self.crc.clone().finalize()
            || len != self.total as u32
            || self.total != self.expected_total
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "its data does not match its checksum: the archive is damaged",
            ));
        }
        Ok(())
    }
}

impl Read for ParallelInflate {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
