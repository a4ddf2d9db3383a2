//! zstd output, multithreaded, through libzstd's streaming API.
//!
//! The `zstd` crate's writer cannot set libzstd's experimental parameters, and one matters
//! here: libzstd 1.5.7 (the bundled one) splits blocks ahead of compression at the fast
//! levels, which on conda environments costs ~15% more CPU for ~2% less output at level 3.
//! We turn that pre-splitter off, so a level means what it meant in zstd 1.5.4 and
//! earlier (the `zstd` command of most systems): `-3` here runs as fast as `zstd -3` there,
//! and its output is as large.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use zstd::zstd_safe::zstd_sys as sys;

/// Each worker's job: zstd's own size at level 3 (4 windows), set rather than left to
/// the level so that the output is the same for every worker count. Each job re-reads a
/// window's tail before its start, so smaller jobs cost more: 4 MiB jobs had saved ~20 MB
/// of peak RSS but took 5-8% more CPU on the 3 GB benchmark env (`tar | zstd -T2 -3`,
/// which we are measured against, uses 8 MiB).
const JOB_SIZE: i32 = 8 << 20;
/// `ZSTD_c_blockSplitterLevel`'s "no splitting".
const NO_PRE_SPLIT: i32 = 1;

pub struct ZstdWriter {
    ctx: *mut sys::ZSTD_CCtx,
    /// Taken by `finish`.
    out: Option<BufWriter<File>>,
    buffer: Vec<u8>,
}

// SAFETY: the context is owned by this writer alone and libzstd does not tie it to the
// thread that created it.
unsafe impl Send for ZstdWriter {}

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
    pub fn new(out: BufWriter<File>, level: i32, threads: usize) -> io::Result<ZstdWriter> {
        // SAFETY: creating a context has no preconditions; null means out of memory.
        let ctx = unsafe { sys::ZSTD_createCCtx() };
        if ctx.is_null() {
            return Err(io::Error::other(
                "zstd: cannot allocate a compression context",
            ));
        }
        let writer = ZstdWriter {
            ctx,
            out: Some(out),
            // SAFETY: pure function.
            buffer: vec![0; unsafe { sys::ZSTD_CStreamOutSize() }],
        };
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
            check(unsafe { sys::ZSTD_CCtx_setParameter(writer.ctx, param, value) })?;
        }
        Ok(writer)
    }

    /// Feed `data` with `mode`, writing out whatever libzstd produces.
    fn stream(&mut self, data: &[u8], mode: sys::ZSTD_EndDirective) -> io::Result<()> {
        let mut input = sys::ZSTD_inBuffer {
            src: data.as_ptr().cast(),
            size: data.len(),
            pos: 0,
        };
        loop {
            let mut output = sys::ZSTD_outBuffer {
                dst: self.buffer.as_mut_ptr().cast(),
                size: self.buffer.len(),
                pos: 0,
            };
            // SAFETY: both buffers point at live memory of the sizes given.
            let left = check(unsafe {
                sys::ZSTD_compressStream2(self.ctx, &mut output, &mut input, mode)
            })?;
            let out = self.out.as_mut().expect("not finished");
            out.write_all(&self.buffer[..output.pos])?;
            let finished = match mode {
                sys::ZSTD_EndDirective::ZSTD_e_end => left == 0,
                _ => input.pos == input.size,
            };
            if finished {
                return Ok(());
            }
        }
    }

    /// End the frame and hand back the file.
    pub fn finish(mut self) -> io::Result<BufWriter<File>> {
        self.stream(&[], sys::ZSTD_EndDirective::ZSTD_e_end)?;
        Ok(self.out.take().expect("not finished"))
    }
}

impl Write for ZstdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream(buf, sys::ZSTD_EndDirective::ZSTD_e_continue)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ZstdWriter {
    fn drop(&mut self) {
        // SAFETY: created by ZSTD_createCCtx, freed once; this also stops its workers.
        unsafe { sys::ZSTD_freeCCtx(self.ctx) };
    }
}
