//! Deflate for parallel blocks: libdeflate's speed, zlib's sync-flush shape.
//!
//! libdeflate is the fastest deflate that builds from the crate registry, but it only
//! writes complete streams: its last block is marked final. To concatenate independently
//! compressed blocks into one stream (one gzip member, one zip entry) every block but the
//! last must instead end the way zlib's sync flush ends one: not final, byte-aligned by an
//! empty stored block. The copy of libdeflate's compressor in `vendor/libdeflate` carries
//! a small patch that writes exactly that (`libdeflate_deflate_compress_sync`); before
//! it, finding the final block of each compressed block cost a fifth of our CPU time.

use crate::buffers;
use std::ffi::{c_int, c_void};
use std::io;

/// libdeflate's settings for a user's (zlib-scale) `--compress-level`: the fastest whose
/// output is about as small as zlib's at that level, so `--compress-level` keeps zlib's
/// meaning for size while running faster (the table behind `MAP` is in benches/ANALYSIS.md,
/// "deflate levels").
pub fn libdeflate_level(zlib_level: u32) -> Settings {
    const MAP: [u32; 10] = [0, 1, 2, 2, 2, 3, 5, 6, 7, 9];
    let level = MAP[zlib_level.min(9) as usize];
    // Levels 2-4 (the default, 4) spend what libdeflate's L2 saves over zlib on speed,
    // as zlib's own fast levels do: a shallower match finder that indexes only the ends of
    // long matches, for output about 1% larger than zlib's level 4 (figures in
    // benches/ANALYSIS.md, "deflate levels").
    let tuned = level == 2;
    Settings {
        level,
        max_insert_length: tuned.then_some(4),
        max_search_depth: tuned.then_some(4),
    }
}

/// How a libdeflate compressor is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub level: u32,
    /// See `libdeflate_set_max_insert_length` in the vendored `libdeflate.h`.
    pub max_insert_length: Option<u32>,
    /// See `libdeflate_set_max_search_depth` in the vendored `libdeflate.h`.
    pub max_search_depth: Option<u32>,
}

#[repr(C)]
struct RawCompressor {
    _opaque: [u8; 0],
}

extern "C" {
    fn libdeflate_alloc_compressor(level: c_int) -> *mut RawCompressor;
    fn libdeflate_free_compressor(c: *mut RawCompressor);
    fn libdeflate_set_max_insert_length(c: *mut RawCompressor, n: std::ffi::c_uint);
    fn libdeflate_set_max_search_depth(c: *mut RawCompressor, n: std::ffi::c_uint);
    fn libdeflate_deflate_compress_bound(c: *mut RawCompressor, n: usize) -> usize;
    fn libdeflate_deflate_compress(
        c: *mut RawCompressor,
        data: *const c_void,
        n: usize,
        out: *mut c_void,
        avail: usize,
    ) -> usize;
    fn libdeflate_deflate_compress_sync(
        c: *mut RawCompressor,
        data: *const c_void,
        n: usize,
        out: *mut c_void,
        avail: usize,
    ) -> usize;
}

/// One libdeflate compressor (it holds large match-finder tables).
struct Compressor {
    raw: *mut RawCompressor,
    settings: Settings,
}

impl Compressor {
    fn new(settings: Settings) -> io::Result<Compressor> {
        // SAFETY: any level 0..=12 is valid; null means out of memory.
        let raw = unsafe { libdeflate_alloc_compressor(settings.level as c_int) };
        if raw.is_null() {
            return Err(io::Error::other("cannot allocate a deflate compressor"));
        }
        if let Some(n) = settings.max_insert_length {
            // SAFETY: `raw` is a live compressor.
            unsafe { libdeflate_set_max_insert_length(raw, n) };
        }
        if let Some(n) = settings.max_search_depth {
            // SAFETY: `raw` is a live compressor.
            unsafe { libdeflate_set_max_search_depth(raw, n) };
        }
        Ok(Compressor { raw, settings })
    }

    /// Compressed `data`, in a pooled buffer sized for the worst case (give it back to
    /// `buffers` when written).
    fn compress(&mut self, data: &[u8], last: bool) -> io::Result<Vec<u8>> {
        // SAFETY: `raw` is a live compressor; the bound is pure arithmetic.
        let bound = unsafe { libdeflate_deflate_compress_bound(self.raw, data.len()) } + 6;
        let mut out = buffers::take(bound);
        let (src, n, dst, avail) = (
            data.as_ptr().cast(),
            data.len(),
            out.as_mut_ptr().cast(),
            out.capacity(),
        );
        // SAFETY: `data` is valid for `n` bytes and `out` has room for `avail`; libdeflate
        // writes at most `avail` bytes and returns how many (0 if they did not fit).
        let written = unsafe {
            if last {
                libdeflate_deflate_compress(self.raw, src, n, dst, avail)
            } else {
                libdeflate_deflate_compress_sync(self.raw, src, n, dst, avail)
            }
        };
        if written == 0 {
            return Err(io::Error::other("deflate output exceeded its bound"));
        }
        // SAFETY: libdeflate initialised the first `written` bytes.
        unsafe { out.set_len(written) };
        Ok(out)
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_compressor, freed once.
        unsafe { libdeflate_free_compressor(self.raw) }
    }
}

/// Compress `data` as one block of a longer raw deflate stream: not final (it ends like a
/// sync flush) unless `last`. `level` is on zlib's scale. Data that is already compressed
/// (jars, wheels, `.gz` files) is stored: libdeflate would spend more time on it than on
/// text only to store it in the end.
pub fn compress(level: u32, data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let settings = if level > 0 && incompressible(data)? {
        libdeflate_level(0)
    } else {
        libdeflate_level(level)
    };
    with_compressor(settings, |c| c.compress(data, last))
}

/// Run `f` with this thread's compressor for `settings` (one per worker thread and
/// setting, not per block: each holds large match-finder tables).
fn with_compressor<T>(
    settings: Settings,
    f: impl FnOnce(&mut Compressor) -> io::Result<T>,
) -> io::Result<T> {
    thread_local! {
        static COMPRESSORS: std::cell::RefCell<Vec<Compressor>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    COMPRESSORS.with(|cell| {
        let mut all = cell.borrow_mut();
        let i = match all.iter().position(|c| c.settings == settings) {
            Some(i) => i,
            None => {
                all.push(Compressor::new(settings)?);
                all.len() - 1
            }
        };
        f(&mut all[i])
    })
}

/// Whether `data` looks like it will not compress: a cheap look at its byte frequencies
/// first (sampled order-0 entropy close to 8 bits, which text, code and binaries never
/// reach), then, for the few blocks that pass, libdeflate's fastest level on slices of
/// it. Measured on tars of environments, /usr/lib and Python's stdlib, of CPython's
/// source .tar.gz and of wheels, 1 MiB blocks: only compressed files' blocks pass both,
/// and storing them lost 0.1% of their size (one mixed block of 200: 3%).
fn incompressible(data: &[u8]) -> io::Result<bool> {
    const MIN: usize = 64 << 10;
    if data.len() < MIN || sampled_entropy(data) < 7.9 {
        return Ok(false);
    }
    const SLICES: usize = 8;
    const SLICE: usize = 8 << 10;
    let mut out = 0;
    for slice in spread(data, SLICES, SLICE) {
        let trial = with_compressor(libdeflate_level(1), |c| c.compress(slice, true))?;
        out += trial.len();
        buffers::give(trial);
    }
    Ok(out as f64 >= 0.98 * (SLICES * SLICE) as f64)
}

/// Order-0 entropy in bits per byte of 16 slices of 4 KiB spread over `data` (at least
/// that long).
fn sampled_entropy(data: &[u8]) -> f64 {
    const SLICES: usize = 16;
    const SLICE: usize = 4 << 10;
    let mut counts = [0u32; 256];
    for slice in spread(data, SLICES, SLICE) {
        for &b in slice {
            counts[b as usize] += 1;
        }
    }
    let total = (SLICES * SLICE) as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// `count` (>= 2) slices of `len` bytes evenly spread over `data`, the first at its start
/// and the last at its end.
fn spread(data: &[u8], count: usize, len: usize) -> impl Iterator<Item = &[u8]> {
    (0..count).map(move |i| {
        let at = (data.len() - len) * i / (count - 1);
        &data[at..at + len]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(seed: u64, len: usize) -> Vec<u8> {
        // Text-like with some noise, so every block type and long codes appear.
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let words: [&[u8]; 6] = [
            b"conda ",
            b"prefix ",
            b"/opt/env/lib ",
            b"\0\0\0\0",
            b"placeholder ",
            b"\n",
        ];
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if x >> 60 < 3 {
                v.push((x >> 32) as u8);
            } else {
                v.extend_from_slice(words[(x >> 33) as usize % words.len()]);
            }
        }
        v.truncate(len);
        v
    }

    #[test]
    fn concatenated_blocks_form_one_stream() {
        for level in [0u32, 1, 4, 6, 12] {
            for len in [0usize, 1, 55, 56, 100, 65_535, 70_000, 300_000] {
                let parts: Vec<Vec<u8>> = (0..3).map(|i| sample(i + len as u64, len)).collect();
                let mut stream = Vec::new();
                for (i, p) in parts.iter().enumerate() {
                    stream.extend(compress(level, p, i == parts.len() - 1).unwrap());
                }
                assert_eq!(inflate(&stream), parts.concat(), "level {level} len {len}");
            }
        }
    }

    #[test]
    fn long_matches_across_window_slides_round_trip() {
        // Long repeats with small edits: many matches past the insert limit, some of
        // them jumping over the point where the 32 KiB window slides.
        let unit = sample(3, 700);
        let mut data = Vec::new();
        let mut x = 1u64;
        while data.len() < 3 << 20 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let cut = (x >> 40) as usize % unit.len();
            data.extend_from_slice(&unit[cut..]);
            data.push((x >> 32) as u8);
            data.extend_from_slice(&unit[..cut / 2]);
        }
        data.truncate(3 << 20);
        for level in [2u32, 4, 5] {
            let mut stream = Vec::new();
            for (i, part) in data.chunks(1 << 20).enumerate() {
                stream.extend(compress(level, part, i == 2).unwrap());
            }
            assert!(inflate(&stream) == data, "level {level}");
        }
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn compressed_data_is_stored_and_everything_else_compressed() {
        let random = noise(5, 1 << 20);
        assert!(incompressible(&random).unwrap());
        let stored = compress(4, &random, false).unwrap();
        // Stored blocks: 5 bytes of framing per 64 KiB, plus the closing empty block.
        assert!(
            stored.len() <= random.len() + 5 * 17 + 5,
            "{}",
            stored.len()
        );
        let mut closed = stored.clone();
        closed.extend_from_slice(&[0x03, 0x00]);
        assert!(inflate(&closed) == random);

        // Text, binaries, and compressed data with some text in it are compressed.
        let text = sample(9, 1 << 20);
        assert!(!incompressible(&text).unwrap());
        let mut mixed = random.clone();
        mixed[..300 << 10].copy_from_slice(&text[..300 << 10]);
        assert!(!incompressible(&mixed).unwrap());
        assert!(compress(4, &mixed, false).unwrap().len() < mixed.len() * 9 / 10);
        // Too short to bother looking.
        assert!(!incompressible(&random[..1000]).unwrap());
    }

    #[test]
    fn nonfinal_segments_end_like_a_sync_flush() {
        // Compressed, stored (level 0), and too short to compress (libdeflate stores
        // those whatever the level).
        for (level, len) in [(4, 200_000), (4, 20), (4, 0), (0, 200_000)] {
            let data = sample(7, len);
            let seg = compress(level, &data, false).unwrap();
            assert_eq!(&seg[seg.len() - 4..], &[0, 0, 0xff, 0xff]);
            let mut closed = seg.clone();
            closed.extend_from_slice(&[0x03, 0x00]);
            assert_eq!(inflate(&closed), data, "level {level} len {len}");
        }
    }
}
