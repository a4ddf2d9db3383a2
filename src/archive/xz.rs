//! xz output through liblzma's multithreaded encoder, driven here rather than by the
//! `liblzma` crate's writer, for two reasons that matter when a pack is stopped:
//!
//! - liblzma blocks inside `lzma_code` until a worker finishes a block when all are busy,
//!   and at level 9 a block is 192 MiB: minutes of work. With a timeout it returns every
//!   100 ms instead (the output does not depend on it), and the loop checks the stop flag.
//! - The crate's writer finishes the stream when dropped, compressing everything pending
//!   (112 s measured after a Ctrl-C at level 9). Dropped here, it only ends the encoder,
//!   whose workers stop within 16 KiB of input.

use crate::error::Cancel;
use liblzma::stream::{Action, Check, MtStreamBuilder, Status, Stream};
use std::fs::File;
use std::io::{self, BufWriter, Write};

/// How long `lzma_code` may wait for a busy worker before giving the loop a turn.
const POLL_MS: u32 = 100;
/// Output gathered per `lzma_code` call.
const OUT_CHUNK: usize = 64 << 10;

pub struct XzWriter {
    stream: Stream,
    /// Taken by `finish`.
    out: Option<BufWriter<File>>,
    buffer: Vec<u8>,
    cancel: Cancel,
}

impl XzWriter {
    pub fn new(
        out: BufWriter<File>,
        level: u32,
        threads: usize,
        cancel: Cancel,
    ) -> io::Result<XzWriter> {
        let stream = MtStreamBuilder::new()
            .threads(threads.max(1) as u32)
            .preset(level)
            .check(Check::Crc64)
            .timeout_ms(POLL_MS)
            .encoder()
            .map_err(io::Error::other)?;
        Ok(XzWriter {
            stream,
            out: Some(out),
            buffer: Vec::with_capacity(OUT_CHUNK),
            cancel,
        })
    }

    /// One `lzma_code` call: returns the input consumed and the status.
    fn code(&mut self, input: &[u8], action: Action) -> io::Result<(usize, Status)> {
        self.cancel.check_io()?;
        self.buffer.clear();
        let before = self.stream.total_in();
        let status = self
            .stream
            .process_vec(input, &mut self.buffer, action)
            .map_err(io::Error::other)?;
        let out = self.out.as_mut().expect("not finished");
        out.write_all(&self.buffer)?;
        Ok(((self.stream.total_in() - before) as usize, status))
    }

    /// End the stream and hand back the file.
    pub fn finish(mut self) -> io::Result<BufWriter<File>> {
        while self.code(&[], Action::Finish)?.1 != Status::StreamEnd {}
        Ok(self.out.take().expect("not finished"))
    }
}

impl Write for XzWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            done += self.code(&buf[done..], Action::Run)?.0;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_cancelled_stream_stops_within_a_poll() {
        let dir = tempfile::tempdir().unwrap();
        // Incompressible input: seconds of work for one worker at level 9.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..(24 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let bound = Duration::from_millis(500);
        let took = crate::error::quickest_stop(bound, || {
            let file = File::create(dir.path().join("out.xz")).unwrap();
            let cancel = Cancel::default();
            let mut w = XzWriter::new(BufWriter::new(file), 9, 1, cancel.clone()).unwrap();
            w.write_all(&data).unwrap();
            let stopper = cancel.after(300);
            let err = w.finish().expect_err("cancelled before the end");
            let asked = stopper.join().unwrap();
            assert!(crate::error::is_cancelled_io(&err));
            asked.elapsed()
        });
        assert!(took < bound, "{took:?}");
    }
}
