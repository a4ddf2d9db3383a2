//! The output of an uncompressed archive: buffered like `BufWriter`, but whole file
//! buffers handed over by the packer are written where they are, by `writev`, instead of
//! being copied into the buffer first. For a plain tar the writer thread does little else
//! than move bytes, and that copy was a third of its work.

use crate::buffers;
use std::fs::File;
use std::io::{self, IoSlice, Write};

/// Bytes gathered before they are written.
const FLUSH_AT: usize = 1 << 20;
/// Pieces per `writev` (Linux allows 1024).
const MAX_PIECES: usize = 512;
/// Smaller buffers are copied: an extra piece costs more than copying a few KiB.
const OWN_FROM: usize = 16 << 10;

enum Piece {
    /// A range of `staged`.
    Staged(usize, usize),
    Owned(Vec<u8>),
}

pub struct GatherWriter {
    file: File,
    staged: Vec<u8>,
    pieces: Vec<Piece>,
    pending: usize,
}

impl GatherWriter {
    pub fn new(file: File) -> GatherWriter {
        GatherWriter {
            file,
            staged: Vec::with_capacity(FLUSH_AT),
            pieces: Vec::new(),
            pending: 0,
        }
    }

    /// Write `bytes`, taking the buffer over; it goes back to the pool once written.
    pub fn put_owned(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        if bytes.len() < OWN_FROM {
            self.stage(&bytes);
            buffers::give(bytes);
        } else {
            self.pending += bytes.len();
            self.pieces.push(Piece::Owned(bytes));
        }
        self.flush_if_full()
    }

    fn stage(&mut self, bytes: &[u8]) {
        let start = self.staged.len();
        self.staged.extend_from_slice(bytes);
        let end = self.staged.len();
        match self.pieces.last_mut() {
            Some(Piece::Staged(_, last_end)) if *last_end == start => *last_end = end,
            _ => self.pieces.push(Piece::Staged(start, end)),
        }
        self.pending += bytes.len();
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.pending >= FLUSH_AT || self.pieces.len() >= MAX_PIECES {
            self.write_pieces()?;
        }
        Ok(())
    }

    /// Write every gathered piece, in order, then recycle the owned ones.
    fn write_pieces(&mut self) -> io::Result<()> {
        let bufs: Vec<&[u8]> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Staged(a, b) => &self.staged[*a..*b],
                Piece::Owned(v) => &v[..],
            })
            .filter(|b| !b.is_empty())
            .collect();
        // Position in `bufs` of the first byte not yet written.
        let (mut first, mut offset) = (0, 0);
        while first < bufs.len() {
            let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&bufs[first][offset..]))
                .chain(bufs[first + 1..].iter().map(|b| IoSlice::new(b)))
                .collect();
            let n = match self.file.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut left = offset + n;
            while first < bufs.len() && left >= bufs[first].len() {
                left -= bufs[first].len();
                first += 1;
            }
            offset = left;
        }
        drop(bufs);
        for piece in self.pieces.drain(..) {
            if let Piece::Owned(v) = piece {
                buffers::give(v);
            }
        }
        self.staged.clear();
        self.pending = 0;
        Ok(())
    }

    /// Write what is gathered and hand back the file.
    pub fn into_inner(mut self) -> io::Result<File> {
        self.write_pieces()?;
        Ok(self.file)
    }
}

impl Write for GatherWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= FLUSH_AT {
            // As BufWriter does: a large write goes straight through, after what is queued.
            self.write_pieces()?;
            return self.file.write(buf);
        }
        self.stage(buf);
        self.flush_if_full()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pieces()?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_borrowed_bytes_arrive_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut w = GatherWriter::new(File::create(&path).unwrap());
        let mut want = Vec::new();
        for i in 0..3000usize {
            let len = (i * 7919) % 70_000;
            let bytes: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
            want.extend_from_slice(&bytes);
            if i % 3 == 0 {
                w.write_all(&bytes).unwrap();
            } else {
                w.put_owned(bytes).unwrap();
            }
            if i % 500 == 0 {
                let big = vec![i as u8; FLUSH_AT + 3];
                want.extend_from_slice(&big);
                w.write_all(&big).unwrap();
            }
        }
        w.into_inner().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
