//! Recycled file buffers.
//!
//! Every file the workers read lands in a buffer that the writer frees once the bytes are
//! in the archive. Fresh from the allocator, each buffer's pages are faulted in, zeroed and
//! charged on first touch and handed back by `malloc_trim` or `munmap` later: packing the
//! 3 GB benchmark env as a plain tar spent a fifth of its CPU doing that (page faults 13%,
//! madvise, munmap, malloc). Buffers that come back here are reused instead, so memory
//! stays warm and its amount is fixed by the pool's budget, not by the allocator's mood.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Size classes are powers of two: from 4 KiB to 8 MiB (the largest file held in memory).
const MIN_SHIFT: u32 = 12;
const MAX_SHIFT: u32 = 23;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Capacity the pool may hold while buffers are not in use: a few batches' worth.
const BUDGET: usize = 12 << 20;

struct Pool {
    /// Class `c` holds buffers of capacity at least `1 << (MIN_SHIFT + c)`.
    classes: [Mutex<VecDeque<Vec<u8>>>; CLASSES],
    /// When each class was last asked for a buffer (a count of requests).
    last_asked: [AtomicU64; CLASSES],
    requests: AtomicU64,
    held: AtomicUsize,
}

static POOL: Pool = Pool::new();

/// The class whose buffers all hold `n` bytes, if any does.
fn class_holding(n: usize) -> Option<usize> {
    let shift = n.max(1).next_power_of_two().trailing_zeros().max(MIN_SHIFT);
    (shift <= MAX_SHIFT).then(|| (shift - MIN_SHIFT) as usize)
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            classes: [const { Mutex::new(VecDeque::new()) }; CLASSES],
            last_asked: [const { AtomicU64::new(0) }; CLASSES],
            requests: AtomicU64::new(0),
            held: AtomicUsize::new(0),
        }
    }

    fn class(&self, c: usize) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.classes[c].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, n: usize) -> Vec<u8> {
        let Some(c) = class_holding(n) else {
            return Vec::with_capacity(n);
        };
        let now = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        self.last_asked[c].store(now, Ordering::Relaxed);
        // The most recently given back: the warmest in cache.
        match self.class(c).pop_back() {
            Some(v) => {
                self.held.fetch_sub(v.capacity(), Ordering::Relaxed);
                v
            }
            None => Vec::with_capacity(1 << (MIN_SHIFT as usize + c)),
        }
    }

    fn give(&self, mut v: Vec<u8>) {
        let cap = v.capacity();
        if !(1 << MIN_SHIFT..=1 << MAX_SHIFT).contains(&cap) {
            return;
        }
        // The largest class this capacity still fills.
        let c = (usize::BITS - 1 - cap.leading_zeros() - MIN_SHIFT) as usize;
        if self.held.fetch_add(cap, Ordering::Relaxed) + cap > BUDGET && !self.make_room(c) {
            self.held.fetch_sub(cap, Ordering::Relaxed);
            return;
        }
        v.clear();
        self.class(c).push_back(v);
    }

    /// Free idle buffers of the classes asked for least recently, other than `keep`,
    /// until what `held` counts fits the budget; false if it cannot. When the files change
    /// in size (small scripts, then large libraries), the buffers of the sizes no longer
    /// read would otherwise fill the pool for good, and every large buffer would be
    /// mapped, faulted in and unmapped afresh.
    fn make_room(&self, keep: usize) -> bool {
        loop {
            if self.held.load(Ordering::Relaxed) <= BUDGET {
                return true;
            }
            let stalest = (0..CLASSES)
                .filter(|&k| k != keep && !self.class(k).is_empty())
                .min_by_key(|&k| self.last_asked[k].load(Ordering::Relaxed));
            let Some(k) = stalest else {
                return false;
            };
            // The front of the queue sat idle longest.
            let freed = self.class(k).pop_front();
            if let Some(v) = freed {
                self.held.fetch_sub(v.capacity(), Ordering::Relaxed);
            }
        }
    }
}

/// An empty buffer with room for at least `n` bytes.
pub fn take(n: usize) -> Vec<u8> {
    POOL.take(n)
}

/// Hand a buffer back for reuse; freed instead if it is too small or large, or the pool
/// cannot make room for it.
pub fn give(v: Vec<u8>) {
    POOL.give(v)
}

/// The whole file at `path` in a pooled buffer; `hint` is its expected size (the file
/// may have grown or shrunk since it was measured: what is read is what counts).
/// The open file comes back too, for the caller's checks on what was read.
pub fn read_file(path: &Path, hint: u64) -> io::Result<(Vec<u8>, File)> {
    let file = File::open(path)?;
    // One byte more than expected, so that the read seeing the end needs no new room. A
    // size beyond what any caller holds in memory is not trusted up front: the buffer
    // grows as the bytes actually arrive.
    const TRUSTED: u64 = 64 << 20;
    let mut buf = take(hint.min(TRUSTED) as usize + 1);
    read_to_end(&file, &mut buf)?;
    Ok((buf, file))
}

/// Append the rest of `file` to `buf`, reading straight into its unused capacity (no
/// zeroing first, no size probe: the caller's buffer is already sized).
fn read_to_end(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(64 * 1024));
        }
        let n = match crate::host::read_uninit(file, buf.spare_capacity_mut()) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: exactly the bytes the read reports written are marked initialised.
        unsafe { buf.set_len(buf.len() + n) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_room_for_what_was_asked() {
        for n in [0usize, 1, 4095, 4096, 4097, 300_000, 8 << 20] {
            let v = take(n);
            assert!(v.capacity() >= n, "{n}");
            assert!(v.is_empty());
            give(v);
            let again = take(n);
            assert!(again.capacity() >= n, "{n} reused");
            give(again);
        }
        // Beyond the largest class: a plain allocation, never pooled.
        let big = take((8 << 20) + 1);
        assert!(big.capacity() > 8 << 20);
        give(big);
    }

    #[test]
    fn a_full_pool_makes_room_by_freeing_the_sizes_asked_for_least_recently() {
        let pool = Pool::new();
        let small = 64 << 10;
        let big = 4 << 20;
        // Fill the budget with small buffers, as many small files leave it.
        let smalls: Vec<_> = (0..BUDGET / small).map(|_| pool.take(small)).collect();
        smalls.into_iter().for_each(|v| pool.give(v));
        assert_eq!(pool.held.load(Ordering::Relaxed), BUDGET);
        // Then large files: their buffers are kept, small ones give way.
        let v = pool.take(big);
        pool.give(v);
        let c = class_holding(big).unwrap();
        assert_eq!(pool.class(c).len(), 1);
        assert_eq!(pool.held.load(Ordering::Relaxed), BUDGET);
        let reused = pool.take(big);
        assert!(reused.capacity() >= big);
        assert_eq!(pool.held.load(Ordering::Relaxed), BUDGET - big);
        // A class with nothing else to give way refuses what does not fit.
        let lone = Pool::new();
        let too_big: Vec<_> = (0..3).map(|_| lone.take(8 << 20)).collect();
        too_big.into_iter().for_each(|v| lone.give(v));
        assert_eq!(lone.held.load(Ordering::Relaxed), 8 << 20);
    }

    #[test]
    fn read_file_reads_everything_whatever_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        for hint in [0u64, 10, 4096, 199_999, 200_000, 1 << 20, u64::MAX] {
            let got = read_file(&path, hint).unwrap().0;
            assert_eq!(got, data, "hint {hint}");
            give(got);
        }
        std::fs::write(&path, b"").unwrap();
        assert!(read_file(&path, 0).unwrap().0.is_empty());
    }
}
