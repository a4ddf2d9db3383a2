//! zstd output, multithreaded, through libzstd's streaming API.
//!
//! The `zstd` crate's writer cannot set libzstd's experimental parameters, and one matters
//! here: libzstd 1.5.7 (the bundled one) splits blocks ahead of compression at the fast
//! levels, which on conda environments costs ~15% more CPU for ~2% less output at level 3.
//! We turn that pre-splitter off, so a level means what it meant in zstd 1.5.4 and
//! earlier (the `zstd` command of most systems): `-3` here runs as fast as `zstd -3` there,
//! and its output is as large.
//!
//! libzstd is called on a thread of its own, fed whole buffers: a call may wait seconds
//! for its workers (at level 22 a job loads megabytes of history before it yields any
//! output), and nothing stops a job in flight. A cancelled pack leaves that thread behind
//! instead of waiting: it frees the context once libzstd returns, or the process exits
//! first, as the command line does after a Ctrl-C.

use crate::buffers;
use crate::error::{cancelled_io, Cancel};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Duration;
use zstd::zstd_safe::zstd_sys as sys;

/// Each worker's job: zstd's own size at level 3 (4 windows), set rather than left to
/// the level so that the output is the same for every worker count. Each job re-reads a
/// window's tail before its start, so smaller jobs cost more: 4 MiB jobs had saved ~20 MB
/// of peak RSS but took 5-8% more CPU on the 3 GB benchmark env (`tar | zstd -T2 -3`,
/// which we are measured against, uses 8 MiB).
const JOB_SIZE: i32 = 8 << 20;
/// `ZSTD_c_blockSplitterLevel`'s "no splitting".
const NO_PRE_SPLIT: i32 = 1;

/// Bytes gathered from small writes before they go to the compressing thread.
const STAGE: usize = 1 << 20;
/// How often a writer waiting for the compressing thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

enum Piece {
    Data(Vec<u8>),
    /// The stream is complete: end the frame. A channel closed without it is abandoned.
    End,
}

/// A libzstd context, owned by one thread at a time.
struct Context(*mut sys::ZSTD_CCtx);

// SAFETY: the context has one owner at a time and libzstd does not tie it to the thread
// that created it.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by ZSTD_createCCtx, freed once, here; this also joins its
        // workers (after their running jobs).
        unsafe { sys::ZSTD_freeCCtx(self.0) };
    }
}

pub struct ZstdWriter {
    /// None once finished or failed.
    pieces: Option<Sender<Piece>>,
    /// The compressing thread's result: the file, or why it stopped.
    done: Receiver<io::Result<BufWriter<File>>>,
    staged: Vec<u8>,
    cancel: Cancel,
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

impl ZstdWriter {
    pub fn new(
        out: BufWriter<File>,
        level: i32,
        threads: usize,
        cancel: Cancel,
    ) -> io::Result<ZstdWriter> {
        // SAFETY: creating a context has no preconditions; null means out of memory.
        let ctx = Context(unsafe { sys::ZSTD_createCCtx() });
        if ctx.0.is_null() {
            return Err(io::Error::other(
                "zstd: cannot allocate a compression context",
            ));
        }
        use sys::ZSTD_cParameter::*;
        // Always the multithreaded mode, even with one worker: its output does not depend
        // on the worker count, unlike the single-threaded mode's.
        for (param, value) in [
            (ZSTD_c_compressionLevel, level),
            (ZSTD_c_checksumFlag, 1),
            (ZSTD_c_nbWorkers, threads.max(1) as i32),
            (ZSTD_c_jobSize, JOB_SIZE),
            (ZSTD_c_experimentalParam20, NO_PRE_SPLIT),
        ] {
            // SAFETY: `ctx` is live; libzstd validates the value.
            check(unsafe { sys::ZSTD_CCtx_setParameter(ctx.0, param, value) })?;
        }
        // Two buffers queued: the compressing thread never waits for the next one while
        // the writer fills it.
        let (pieces, queue) = bounded::<Piece>(2);
        let (report, done) = bounded(1);
        let stop = cancel.clone();
        std::thread::Builder::new()
            .name("conda-pack-zstd".into())
            .spawn(move || {
                let _ = report.send(compress(ctx, out, &queue, &stop));
            })?;
        Ok(ZstdWriter {
            pieces: Some(pieces),
            done,
            staged: buffers::take(STAGE),
            cancel,
        })
    }

    /// Hand `piece` to the compressing thread, waiting while it is busy unless the pack
    /// is cancelled; if that thread has stopped, its error.
    fn send(&mut self, mut piece: Piece) -> io::Result<()> {
        loop {
            self.cancel.check_io()?;
            let Some(tx) = &self.pieces else {
                return Err(io::Error::other("zstd: the stream has ended"));
            };
            match tx.send_timeout(piece, POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(p)) => piece = p,
                Err(SendTimeoutError::Disconnected(_)) => {
                    self.pieces = None;
                    return Err(self.outcome().err().unwrap_or_else(|| {
                        io::Error::other("zstd: the compressing thread stopped")
                    }));
                }
            }
        }
    }

    fn send_staged(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.staged, buffers::take(STAGE));
        self.send(Piece::Data(full))
    }

    /// The compressing thread's result, waited for unless the pack is cancelled.
    fn outcome(&self) -> io::Result<BufWriter<File>> {
        loop {
            self.cancel.check_io()?;
            match self.done.recv_timeout(POLL) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("zstd: the compressing thread panicked"))
                }
            }
        }
    }

    /// Write `bytes`, taking the buffer over (no copy).
    pub fn put_owned(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        if bytes.len() < STAGE / 16 {
            self.write_all(&bytes)?;
            buffers::give(bytes);
            return Ok(());
        }
        self.send_staged()?;
        self.send(Piece::Data(bytes))
    }

    /// End the frame and hand back the file.
    pub fn finish(mut self) -> io::Result<BufWriter<File>> {
        self.send_staged()?;
        self.send(Piece::End)?;
        self.pieces = None;
        self.outcome()
    }
}

impl Write for ZstdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (STAGE - self.staged.len()).min(buf.len());
        self.staged.extend_from_slice(&buf[..n]);
        if self.staged.len() == STAGE {
            self.send_staged()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ZstdWriter {
    fn drop(&mut self) {
        buffers::give(std::mem::take(&mut self.staged));
    }
}

/// The compressing thread: each piece through libzstd into `out`, then the frame's end.
/// Returns early, abandoning the frame, when the pack is cancelled or the writer goes away
/// without ending the stream.
fn compress(
    ctx: Context,
    mut out: BufWriter<File>,
    pieces: &Receiver<Piece>,
    cancel: &Cancel,
) -> io::Result<BufWriter<File>> {
    // SAFETY: pure function.
    let mut buffer = vec![0u8; unsafe { sys::ZSTD_CStreamOutSize() }];
    loop {
        let (data, mode) = match pieces.recv() {
            Ok(Piece::Data(d)) => (d, sys::ZSTD_EndDirective::ZSTD_e_continue),
            Ok(Piece::End) => (Vec::new(), sys::ZSTD_EndDirective::ZSTD_e_end),
            Err(_) => return Err(cancelled_io()),
        };
        let mut input = sys::ZSTD_inBuffer {
            src: data.as_ptr().cast(),
            size: data.len(),
            pos: 0,
        };
        loop {
            // libzstd returns from a call that waits on its workers each time one has
            // compressed another 512 KiB (more at the ultra levels).
            cancel.check_io()?;
            let mut output = sys::ZSTD_outBuffer {
                dst: buffer.as_mut_ptr().cast(),
                size: buffer.len(),
                pos: 0,
            };
            // SAFETY: both buffers point at live memory of the sizes given.
            let left =
                check(unsafe { sys::ZSTD_compressStream2(ctx.0, &mut output, &mut input, mode) })?;
            out.write_all(&buffer[..output.pos])?;
            let finished = match mode {
                sys::ZSTD_EndDirective::ZSTD_e_end => left == 0,
                _ => input.pos == input.size,
            };
            if finished {
                break;
            }
        }
        if let sys::ZSTD_EndDirective::ZSTD_e_end = mode {
            return Ok(out);
        }
        buffers::give(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_stream_stops_without_waiting_for_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("out.zst")).unwrap();
        let cancel = Cancel::default();
        let mut w = ZstdWriter::new(BufWriter::new(file), 22, 1, cancel.clone()).unwrap();
        // Seconds of work for one worker at level 22.
        let mut data = Vec::new();
        for i in 0..600_000u32 {
            data.extend_from_slice(
                format!("{} of a conda environment {}\n", i, i % 997).as_bytes(),
            );
        }
        let stopper = cancel.after(300);
        let result = w.write_all(&data).and_then(|()| w.finish().map(|_| ()));
        let asked = stopper.join().unwrap();
        assert!(crate::error::is_cancelled_io(&result.unwrap_err()));
        assert!(
            asked.elapsed() < Duration::from_millis(400),
            "{:?}",
            asked.elapsed()
        );
    }
}
