//! Archives to unpack: which format a file is (from its bytes, not its name), and its
//! tar stream, decompressed on every core where the archive says where its blocks start
//! (our gzip block index, a zstd seek table).

use super::tar::{Header, Input, Kind, TarError, TarReader};
use crate::archive::blockindex::{self, BlockIndex};
use crate::archive::seektable::{self, Frame, SeekTable};
use crate::error::Cancel;
use crate::le::u32_at;
use crate::ordered::Window;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::cell::RefCell;
use std::ffi::CStr;
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
/// Bytes of zstd frames (compressed and decoded) between the tar reader and the furthest
/// decoding worker, besides the frame the reader is in.
const FRAMES_IN_FLIGHT: u64 = 256 << 20;

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
    /// The seek table of a zstd file (ours, or any in zstd's seekable format).
    pub frames: Option<SeekTable>,
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
        let frames = match format {
            Format::Zstd => SeekTable::find(&file, len)?,
            _ => None,
        };
        Ok(Archive {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len,
            format,
            start,
            index,
            frames,
        })
    }

    /// Whether the archive says where its blocks or frames start, so that it is
    /// decompressed on every core.
    pub fn indexed(&self) -> bool {
        self.index.is_some() || self.frames.is_some()
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
            Format::Zstd => match &self.frames {
                Some(table) => Box::new(ParallelFrames::new(
                    Arc::clone(&self.file),
                    table.frames.clone(),
                    threads,
                    consumed,
                    cancel.clone(),
                )),
                None => Box::new(zstd::stream::read::Decoder::new(raw()?)?),
            },
            Format::Zip => return Err(io::Error::other("a zip archive has no tar stream")),
        })
    }

    /// The archive's generated files (conda-unpack among them), read before the rest when
    /// the archive says where they are: our indexed gzip streams and zstd frames, and
    /// plain tar (whose headers can be walked without reading what lies between them).
    /// None when they can only be met at the end.
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
            Format::Zstd => {
                let Some(table) = &self.frames else {
                    return Ok(None);
                };
                let Some(tail) = table.tail else {
                    return Ok(None);
                };
                let (first, start) = table.frame_at(tail);
                if table.total - start > MAX_TAIL {
                    return Ok(None);
                }
                let mut data = Vec::new();
                let mut input = Vec::new();
                for (i, frame) in table.frames.iter().enumerate().skip(first) {
                    cancel.check_io()?;
                    let out = std::mem::take(&mut data);
                    data = decode_frame(&self.file, i, frame, &mut input, out)?;
                }
                let from = (tail - start) as usize;
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

/// A frame that does not decode to what the seek table says.
fn damaged_frame(i: usize, frame: &Frame, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "its compressed data is damaged: zstd frame {} (at byte {}) {why}",
            i + 1,
            frame.at
        ),
    )
}

/// The zstd error a libzstd call returned, if it did.
fn zstd_error(code: usize) -> Option<String> {
    use zstd::zstd_safe::zstd_sys as sys;
    // SAFETY: ZSTD_isError and ZSTD_getErrorName take any code; the name is a static string.
    unsafe {
        (sys::ZSTD_isError(code) != 0).then(|| {
            CStr::from_ptr(sys::ZSTD_getErrorName(code))
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// Frame `i` of a zstd file with a seek table, decoded and appended to `out`: exactly one
/// frame of the compressed size the table gives, decoding to the size it gives, with the
/// checksum it gives when both record one (libzstd checks the frame's own checksum as it
/// decodes). A skippable frame decodes to nothing. The frame is read into `input`.
fn decode_frame(
    file: &File,
    i: usize,
    frame: &Frame,
    input: &mut Vec<u8>,
    mut out: Vec<u8>,
) -> io::Result<Vec<u8>> {
    use zstd::zstd_safe::zstd_sys as sys;
    let csize = frame.csize as usize;
    let dsize = frame.dsize as usize;
    let damaged = |why: &str| damaged_frame(i, frame, why);
    // Every frame's content is within `seektable::MAX_FRAME` (or the table is not used),
    // and no encoder doubles it.
    if csize < 8 || csize as u64 > 2 * seektable::MAX_FRAME {
        return Err(damaged("has a size the seek table cannot mean"));
    }
    input.resize(csize, 0);
    file.read_exact_at(input, frame.at)?;
    if seektable::is_skippable(u32_at(input, 0)) {
        let whole = 8 + u32_at(input, 4) as usize == csize;
        return match whole && dsize == 0 {
            true => Ok(out),
            false => Err(damaged("is not the skippable frame the seek table says")),
        };
    }
    let src = input.as_ptr().cast();
    // SAFETY: `src` holds `csize` bytes; these only read them.
    let (found, content) = unsafe {
        (
            sys::ZSTD_findFrameCompressedSize(src, csize),
            sys::ZSTD_getFrameContentSize(src, csize),
        )
    };
    if let Some(e) = zstd_error(found) {
        return Err(damaged(&format!("is not a zstd frame ({e})")));
    }
    if found != csize {
        return Err(damaged("does not end where the seek table says"));
    }
    let unknown = sys::ZSTD_CONTENTSIZE_UNKNOWN as u64;
    if content != unknown && content != dsize as u64 {
        return Err(damaged("holds another size than the seek table says"));
    }
    // The frame header's descriptor: bit 2, the frame ends with a checksum.
    let has_checksum = input[4] & 0x04 != 0;
    if let (Some(sum), true) = (frame.checksum, has_checksum) {
        if u32_at(input, csize - 4) != sum {
            return Err(damaged("has another checksum than the seek table says"));
        }
    }
    out.reserve(dsize.max(1));
    let at = out.len();
    let written = with_dctx(|dctx| {
        // SAFETY: `dctx` is live, `out` has room for `dsize` more bytes and `src` holds
        // `csize`; libzstd writes at most `dsize`.
        unsafe {
            let dst = out.as_mut_ptr().add(at);
            sys::ZSTD_decompressDCtx(dctx, dst.cast(), dsize, src, csize)
        }
    })?;
    if let Some(e) = zstd_error(written) {
        return Err(damaged(&format!("does not decode ({e})")));
    }
    if written != dsize {
        return Err(damaged("decodes to another size than the seek table says"));
    }
    // SAFETY: libzstd initialised the `written` bytes after `at`.
    unsafe { out.set_len(at + written) };
    Ok(out)
}

/// Run `f` with this thread's decompression context.
fn with_dctx<T>(f: impl FnOnce(*mut zstd::zstd_safe::zstd_sys::ZSTD_DCtx) -> T) -> io::Result<T> {
    use zstd::zstd_safe::zstd_sys as sys;
    struct Dctx(*mut sys::ZSTD_DCtx);
    impl Drop for Dctx {
        fn drop(&mut self) {
            // SAFETY: created by ZSTD_createDCtx, freed once, here.
            unsafe { sys::ZSTD_freeDCtx(self.0) };
        }
    }
    thread_local! {
        // SAFETY: creating a context has no preconditions.
        static DCTX: RefCell<Dctx> = RefCell::new(Dctx(unsafe { sys::ZSTD_createDCtx() }));
    }
    DCTX.with(|d| {
        let dctx = d.borrow().0;
        if dctx.is_null() {
            return Err(io::Error::other(
                "zstd: cannot allocate a decompression context",
            ));
        }
        Ok(f(dctx))
    })
}

/// A decoded frame and its compressed length (for the progress count).
type Decoded = io::Result<(Vec<u8>, u64)>;

/// The frames of a zstd file with a seek table, decoded a frame per worker and read back
/// in order, with bounded lookahead ([`FRAMES_IN_FLIGHT`]). The frames cover the file up
/// to the table (the table was checked for that) and each is checked against it, so a
/// whole, undamaged stream is what the reader gets, or an error.
///
/// Frames are megabytes, larger than the buffer pool keeps: the reader hands each frame's
/// buffer back to the workers, and each worker keeps its own input buffer, so that memory
/// is not faulted in afresh for every frame.
struct ParallelFrames {
    window: Arc<Window<Decoded>>,
    spare: Sender<Vec<u8>>,
    count: usize,
    taken: usize,
    current: Vec<u8>,
    pos: usize,
    consumed: Arc<AtomicU64>,
}

impl ParallelFrames {
    fn new(
        file: Arc<File>,
        frames: Vec<Frame>,
        threads: usize,
        consumed: Arc<AtomicU64>,
        cancel: Cancel,
    ) -> ParallelFrames {
        let threads = threads.max(1);
        let window = Arc::new(Window::new(FRAMES_IN_FLIGHT, threads + 2));
        let frames = Arc::new(frames);
        let count = frames.len();
        let (spare, spares) = bounded::<Vec<u8>>(2);
        for t in 0..threads {
            let (window, file, frames, cancel, spares) = (
                Arc::clone(&window),
                Arc::clone(&file),
                Arc::clone(&frames),
                cancel.clone(),
                spares.clone(),
            );
            std::thread::Builder::new()
                .name(format!("conda-pack-unzstd-{t}"))
                .spawn(move || {
                    let cost = |i: usize| frames[i].csize as u64 + frames[i].dsize as u64;
                    let mut input = Vec::new();
                    while let Some(i) = window.claim(count, cost) {
                        let out = spares.try_recv().unwrap_or_default();
                        let r = cancel
                            .check_io()
                            .and_then(|()| decode_frame(&file, i, &frames[i], &mut input, out));
                        window.finish(i, r.map(|b| (b, frames[i].csize as u64)));
                    }
                })
                .expect("spawn");
        }
        ParallelFrames {
            spare,
            window,
            count,
            taken: 0,
            current: Vec::new(),
            pos: 0,
            consumed,
        }
    }
}

impl Read for ParallelFrames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.taken == self.count {
                return Ok(0);
            }
            let (bytes, span) = self
                .window
                .take()
                .unwrap_or_else(|| Err(io::Error::other("the zstd decoders stopped")))?;
            self.taken += 1;
            self.consumed.fetch_add(span, Ordering::Relaxed);
            let mut done = std::mem::replace(&mut self.current, bytes);
            done.clear();
            let _ = self.spare.try_send(done);
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ParallelFrames {
    fn drop(&mut self) {
        // The workers waiting for room, or about to claim a frame, stop.
        self.window.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Compression, Encoder};
    use std::io::Write;

    /// `len` bytes of text that compress, with a tail marked at `tail`.
    fn zst(dir: &Path, len: usize, tail: Option<usize>) -> (PathBuf, Vec<u8>) {
        let mut data = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while data.len() < len {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44;
            data.extend_from_slice(format!("{i} {x:x} of a tar stream\n").as_bytes());
            i += 1;
        }
        data.truncate(len);
        let path = dir.join("a.tar.zst");
        let cancel = Cancel::default();
        let file = std::fs::File::create(&path).unwrap();
        let mut enc = Encoder::new(file, Compression::Zstd(1), 2, &cancel).unwrap();
        let cut = tail.unwrap_or(len);
        enc.write_all(&data[..cut]).unwrap();
        if tail.is_some() {
            enc.mark_tail(cut as u64).unwrap();
        }
        enc.write_all(&data[cut..]).unwrap();
        enc.finish().unwrap();
        (path, data)
    }

    fn read_all(archive: &Archive, threads: usize) -> io::Result<Vec<u8>> {
        let consumed = Arc::new(AtomicU64::new(0));
        let mut out = Vec::new();
        let mut s = archive.tar_stream(threads, Arc::clone(&consumed), &Cancel::default())?;
        s.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn our_zstd_frames_decode_in_parallel_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = zst(dir.path(), 40 << 20, Some(39 << 20));
        let archive = Archive::open(&path).unwrap();
        assert_eq!(archive.format, Format::Zstd);
        let table = archive.frames.as_ref().expect("a seek table");
        assert_eq!(table.frames.len(), 6); // 40 MiB in frames of 8 MiB, and ours
        assert_eq!(table.tail, Some(39 << 20));
        assert!(archive.indexed());
        for threads in [1, 3] {
            assert!(read_all(&archive, threads).unwrap() == data);
        }
        // A reader dropped half-way stops its workers (the test would hang otherwise).
        let consumed = Arc::new(AtomicU64::new(0));
        let mut s = archive.tar_stream(2, consumed, &Cancel::default()).unwrap();
        let mut some = vec![0u8; 20 << 20];
        s.read_exact(&mut some).unwrap();
        drop(s);
    }

    #[test]
    fn a_foreign_single_frame_is_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"not much of a tar stream\n".repeat(100_000);
        let path = dir.path().join("one.tar.zst");
        std::fs::write(&path, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
        let archive = Archive::open(&path).unwrap();
        assert!(archive.frames.is_none() && !archive.indexed());
        assert_eq!(read_all(&archive, 2).unwrap(), data);
        assert!(archive.read_ahead(&Cancel::default()).unwrap().is_none());
    }

    #[test]
    fn damaged_frames_and_tables_are_errors_naming_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = zst(dir.path(), 40 << 20, None);
        let good = std::fs::read(&path).unwrap();
        let table = Archive::open(&path).unwrap().frames.unwrap();
        let second = table.frames[1];
        let n = good.len();
        // Where the table's entries start: the first frame's, then the second's.
        let first = n - 9 - 12 * table.frames.len();
        let second_entry = first + 12;
        let bad = dir.path().join("bad.tar.zst");
        type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
        let cases: Vec<(Damage, &str)> = vec![
            // A byte in the middle of the second frame: its checksum no longer holds.
            (
                Box::new(|b| b[(second.at + second.csize as u64 / 2) as usize] ^= 1),
                "zstd frame 2",
            ),
            // The second frame's start: it is not a frame any more.
            (Box::new(|b| b[second.at as usize] ^= 1), "zstd frame 2"),
            // The first frame's compressed size in the table.
            (
                Box::new(|b| b[first] ^= 1),
                "do not add up to the file's length",
            ),
            // The second frame's decompressed size in the table.
            (Box::new(|b| b[second_entry + 4] ^= 1), "zstd frame 2"),
            // The second frame's checksum in the table.
            (Box::new(|b| b[second_entry + 8] ^= 1), "checksum"),
            // Two compressed sizes that still add up: the first frame ends elsewhere.
            (
                Box::new(|b| {
                    b[first] = b[first].wrapping_add(1);
                    b[second_entry] = b[second_entry].wrapping_sub(1);
                }),
                "zstd frame 1",
            ),
        ];
        for (damage, expected) in cases {
            let mut b = good.clone();
            damage(&mut b);
            std::fs::write(&bad, &b).unwrap();
            let err = match Archive::open(&bad) {
                Err(e) => e,
                Ok(a) => read_all(&a, 2).unwrap_err(),
            };
            let msg = err.to_string();
            assert!(msg.contains(expected), "{expected}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{msg}");
        }
        // Cut short, the file has no table: read as one stream, which ends too soon.
        std::fs::write(&bad, &good[..n * 2 / 3]).unwrap();
        let a = Archive::open(&bad).unwrap();
        assert!(a.frames.is_none());
        assert!(read_all(&a, 2).is_err());
    }

    #[test]
    fn the_generated_files_are_read_ahead_from_the_last_frames() {
        let dir = tempfile::tempdir().unwrap();
        // A tar whose last member is a conda-unpack script, after 20 MiB of another.
        let tar_path = dir.path().join("t.tar");
        {
            let mut b = ::tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
            let big = vec![b'x'; 20 << 20];
            let mut h = ::tar::Header::new_ustar();
            h.set_size(big.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, "env/lib/big", &big[..]).unwrap();
            let script = b"#!/bin/sh\necho records\n";
            let mut h = ::tar::Header::new_ustar();
            h.set_size(script.len() as u64);
            h.set_mode(0o755);
            b.append_data(&mut h, "env/bin/conda-unpack", &script[..])
                .unwrap();
            b.finish().unwrap();
        }
        let tar = std::fs::read(&tar_path).unwrap();
        let tail = 512 + (20 << 20);
        let path = dir.path().join("s.tar.zst");
        let cancel = Cancel::default();
        let mut enc = Encoder::new(
            std::fs::File::create(&path).unwrap(),
            Compression::Zstd(3),
            2,
            &cancel,
        )
        .unwrap();
        enc.write_all(&tar[..tail]).unwrap();
        enc.mark_tail(tail as u64).unwrap();
        enc.write_all(&tar[tail..]).unwrap();
        enc.finish().unwrap();
        let archive = Archive::open(&path).unwrap();
        let found = archive.read_ahead(&cancel).unwrap().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, b"env/bin/conda-unpack");
        assert_eq!(found[0].1, b"#!/bin/sh\necho records\n");
    }
}
