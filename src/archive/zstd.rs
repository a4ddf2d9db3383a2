//! zstd output: the stream cut into frames compressed independently on our own workers
//! (the block pipeline of `blocks.rs`, as for gzip), then a seek table (`seektable.rs`)
//! that lets `conda-pack unpack` decode the frames on every core. Every zstd reader reads
//! the frames one after the other as one stream and skips the table.
//!
//! Frames are cut at fixed uncompressed sizes and each is compressed the same way whatever
//! thread takes it, so the archive is the same for every worker count. A frame starts
//! with no history, which costs ratio: the frame size is a multiple of the level's window
//! ([`frame_size`]), so the matches lost at frame starts are a small share: at level 3,
//! 8 MiB frames come out 0.25% larger than libzstd's multithreaded mode, which carries
//! part of a window into each of its 8 MiB jobs (figures at [`MIN_FRAME`]).
//!
//! libzstd 1.5.7 (the bundled one) splits blocks ahead of compression at the fast levels,
//! which on conda environments costs ~15% more CPU for ~2% less output at level 3. We turn
//! that pre-splitter off, so a level means what it meant in zstd 1.5.4 and earlier (the
//! `zstd` command of most systems): `-3` here runs as fast as `zstd -3` there, and its
//! output is as large.
//!
//! A frame is fed to libzstd a slice at a time, and the stop flag is looked at between
//! slices: at level 22 a slice takes a tenth of a second, where a whole frame takes many
//! seconds. So a cancelled pack stops within a second at every level.

use super::blocks::Codec;
use crate::error::Cancel;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::cell::RefCell;
use std::ffi::CStr;
use std::io;
use zstd::zstd_safe::zstd_sys as sys;

/// `ZSTD_c_blockSplitterLevel`'s "no splitting".
const NO_PRE_SPLIT: i32 = 1;
/// Input handed to libzstd per call, between looks at the stop flag: two blocks.
const SLICE: usize = 256 << 10;
/// Frame sizes: four windows of the level, within these bounds (8 MiB up to level 8,
/// 16 MiB up to 16, 32 MiB above). At level 3 that is 8 MiB, the job size libzstd's
/// multithreaded mode uses. Larger frames lose less at their starts but hold more memory
/// (a few are in flight), measured:
///
/// - level 3, the 3 GB benchmark env: 8 MiB frames 1,082.5 MB, 0.25% more than the single
///   frame of libzstd's multithreaded mode (1,079.8 MB) and 0.13% less than `zstd -T2 -3`
///   (1,083.9 MB); 16 MiB frames 1,079.5 MB, but a peak RSS of 158-190 MiB instead of
///   113-126 MiB;
/// - level 19, the 0.3 GB env: 32 MiB frames 1.1% more than libzstd's multithreaded mode
///   (64 MiB: 0.6% more), in 70 s instead of 112 s (its jobs re-read a window of history
///   each), with a peak RSS of 405 MiB instead of 266 (64 MiB: 594).
const MIN_FRAME: usize = 8 << 20;
const MAX_FRAME: usize = 32 << 20;

/// The window log libzstd uses at `level` for inputs larger than 256 KiB (its table of
/// default parameters, `lib/compress/clevels.h`); level 0 is its default, 3.
fn window_log(level: i32) -> u32 {
    const LOGS: [u32; 23] = [
        21, 19, 20, 21, 21, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 25, 26, 27,
    ];
    if level < 0 {
        19
    } else {
        LOGS[level.min(22) as usize]
    }
}

/// Uncompressed bytes per frame at `level`.
pub fn frame_size(level: i32) -> usize {
    (4usize << window_log(level)).clamp(MIN_FRAME, MAX_FRAME)
}

fn check(code: usize) -> io::Result<usize> {
    // SAFETY: ZSTD_isError and ZSTD_getErrorName take any code; the name is a static string.
    unsafe {
        if sys::ZSTD_isError(code) != 0 {
            let name = CStr::from_ptr(sys::ZSTD_getErrorName(code));
            return Err(io::Error::other(format!(
                "zstd: {}",
                name.to_string_lossy()
            )));
        }
    }
    Ok(code)
}

/// A compressed frame: its bytes, uncompressed length and checksum (the low 32 bits of
/// the XXH64 of its content, which the frame ends with).
pub struct Compressed {
    pub bytes: Vec<u8>,
    pub len: u32,
    pub checksum: u32,
}

/// One frame per block, at `level`; `cancel` is looked at between slices of a frame.
pub struct Frames {
    level: i32,
    cancel: Cancel,
    /// Emptied output buffers, back from the writer: each is megabytes, larger than the
    /// buffer pool keeps, and a fresh one is faulted in page by page (a third more page
    /// faults for the whole pack when every frame had a new one).
    spare: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

impl Frames {
    /// Up to `keep` output buffers are kept for reuse.
    pub fn new(level: i32, cancel: Cancel, keep: usize) -> Frames {
        Frames {
            level,
            cancel,
            spare: bounded(keep),
        }
    }

    /// Where a frame's bytes go once written (see [`Frames::spare`]).
    pub fn recycler(&self) -> Sender<Vec<u8>> {
        self.spare.0.clone()
    }
}

impl Codec for Frames {
    type Out = Compressed;

    fn compress(&self, data: &[u8]) -> io::Result<Compressed> {
        let out = match self.spare.1.try_recv() {
            Ok(mut v) => {
                v.clear();
                v
            }
            Err(_) => Vec::with_capacity(data.len() / 2 + (64 << 10)),
        };
        with_context(self.level, |c| c.frame(data, out, &self.cancel))
    }
}

/// A libzstd compression context set up for one level, single-threaded.
struct Context {
    raw: *mut sys::ZSTD_CCtx,
    level: i32,
}

impl Context {
    fn new(level: i32) -> io::Result<Context> {
        // SAFETY: creating a context has no preconditions; null means out of memory.
        let raw = unsafe { sys::ZSTD_createCCtx() };
        if raw.is_null() {
            return Err(io::Error::other(
                "zstd: cannot allocate a compression context",
            ));
        }
        let ctx = Context { raw, level };
        use sys::ZSTD_cParameter::*;
        for (param, value) in [
            (ZSTD_c_compressionLevel, level),
            (ZSTD_c_checksumFlag, 1),
            (ZSTD_c_contentSizeFlag, 1),
            (ZSTD_c_experimentalParam20, NO_PRE_SPLIT),
            // ZSTD_c_stableInBuffer: libzstd reads the frame where it is instead of
            // copying it into a buffer of its own.
            (ZSTD_c_experimentalParam9, 1),
        ] {
            // SAFETY: `raw` is live; libzstd validates the value.
            check(unsafe { sys::ZSTD_CCtx_setParameter(raw, param, value) })?;
        }
        Ok(ctx)
    }

    /// `data` as one frame, into `out` (empty).
    fn frame(&mut self, data: &[u8], mut out: Vec<u8>, cancel: &Cancel) -> io::Result<Compressed> {
        // SAFETY: `raw` is live; these only reset the frame state and set its size.
        unsafe {
            check(sys::ZSTD_CCtx_reset(
                self.raw,
                sys::ZSTD_ResetDirective::ZSTD_reset_session_only,
            ))?;
            check(sys::ZSTD_CCtx_setPledgedSrcSize(
                self.raw,
                data.len() as u64,
            ))?;
        }
        // With a stable input buffer the same buffer is passed every time, its size
        // growing by a slice per call.
        let mut input = sys::ZSTD_inBuffer {
            src: data.as_ptr().cast(),
            size: 0,
            pos: 0,
        };
        loop {
            cancel.check_io()?;
            input.size = (input.size + SLICE).min(data.len());
            let mode = if input.size == data.len() {
                sys::ZSTD_EndDirective::ZSTD_e_end
            } else {
                sys::ZSTD_EndDirective::ZSTD_e_continue
            };
            loop {
                if out.capacity() - out.len() < SLICE {
                    out.reserve(SLICE.max(out.capacity() / 2));
                }
                let mut output = sys::ZSTD_outBuffer {
                    dst: out.as_mut_ptr().cast(),
                    size: out.capacity(),
                    pos: out.len(),
                };
                // SAFETY: `input` points into `data` (live, unchanged between calls, as
                // the stable-input mode requires) and `output` at `out`'s capacity.
                let left = check(unsafe {
                    sys::ZSTD_compressStream2(self.raw, &mut output, &mut input, mode)
                })?;
                // SAFETY: libzstd wrote the bytes up to `output.pos`.
                unsafe { out.set_len(output.pos) };
                let done = match mode {
                    sys::ZSTD_EndDirective::ZSTD_e_end => left == 0,
                    _ => input.pos == input.size,
                };
                if done {
                    break;
                }
            }
            if input.size == data.len() {
                break;
            }
        }
        let checksum = u32::from_le_bytes(out[out.len() - 4..].try_into().expect("4 bytes"));
        Ok(Compressed {
            bytes: out,
            len: data.len() as u32,
            checksum,
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by ZSTD_createCCtx, freed once, here.
        unsafe { sys::ZSTD_freeCCtx(self.raw) };
    }
}

/// Run `f` with this thread's context for `level` (one per worker and level, not per
/// frame: each holds the level's match-finder tables).
fn with_context<T>(level: i32, f: impl FnOnce(&mut Context) -> io::Result<T>) -> io::Result<T> {
    thread_local! {
        static CONTEXTS: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
    }
    CONTEXTS.with(|cell| {
        let mut all = cell.borrow_mut();
        let i = match all.iter().position(|c| c.level == level) {
            Some(i) => i,
            None => {
                all.push(Context::new(level)?);
                all.len() - 1
            }
        };
        f(&mut all[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(len: usize) -> Vec<u8> {
        let mut data = Vec::new();
        let mut i = 0u32;
        while data.len() < len {
            data.extend_from_slice(
                format!("{} of a conda environment {}\n", i, i % 997).as_bytes(),
            );
            i += 1;
        }
        data.truncate(len);
        data
    }

    #[test]
    fn a_frame_is_one_whole_zstd_frame_with_its_size_and_checksum() {
        for len in [0, 1, 1000, SLICE, SLICE + 1, 3 * SLICE + 17] {
            let data = sample(len);
            let codec = Frames::new(3, Cancel::default(), 1);
            let c = codec.compress(&data).unwrap();
            assert_eq!(c.len as usize, len);
            // SAFETY: the buffer holds what it says.
            let size =
                unsafe { sys::ZSTD_getFrameContentSize(c.bytes.as_ptr().cast(), c.bytes.len()) };
            assert_eq!(size, len as u64);
            let found = unsafe {
                sys::ZSTD_findFrameCompressedSize(c.bytes.as_ptr().cast(), c.bytes.len())
            };
            assert_eq!(found, c.bytes.len());
            assert_eq!(zstd::decode_all(&c.bytes[..]).unwrap(), data);
            // The same again, from the same thread's context.
            assert_eq!(codec.compress(&data).unwrap().bytes, c.bytes);
            // A corrupted checksum is noticed by the decoder.
            let mut bad = c.bytes.clone();
            let n = bad.len();
            bad[n - 1] ^= 1;
            assert!(zstd::decode_all(&bad[..]).is_err());
            let _ = c.checksum;
        }
    }

    #[test]
    fn frames_grow_with_the_window() {
        assert_eq!(frame_size(3), 8 << 20);
        assert_eq!(frame_size(-5), 8 << 20);
        assert_eq!(frame_size(0), 8 << 20);
        assert_eq!(frame_size(8), 8 << 20);
        assert_eq!(frame_size(9), 16 << 20);
        assert_eq!(frame_size(19), 32 << 20);
        assert_eq!(frame_size(22), 32 << 20);
    }

    #[test]
    fn a_cancelled_frame_stops_between_slices() {
        // Many seconds of work at level 22.
        let data = sample(24 << 20);
        // The promise is Ctrl-C within a second. A slice at level 22 takes ~0.1 s. The
        // frame's first call takes ~0.35 s (libzstd clears its level-22 tables), so the
        // flag is set after it, where only slices are left.
        let bound = Duration::from_millis(1000);
        let took = crate::error::quickest_stop(bound, || {
            let cancel = Cancel::default();
            let codec = Frames::new(22, cancel.clone(), 1);
            let stopper = cancel.after(1000);
            let result = codec.compress(&data);
            let asked = stopper.join().unwrap();
            assert!(crate::error::is_cancelled_io(&result.err().unwrap()));
            asked.elapsed()
        });
        assert!(took < bound, "{took:?}");
    }
}
