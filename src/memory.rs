//! Handing freed heap back to the OS.
//!
//! glibc gives every thread that allocates its own arena and keeps what is freed there for
//! later use by that thread. Our workers allocate file buffers of every size, so each arena
//! ends up holding tens of megabytes of free but fragmented memory that no other thread can
//! reuse: peak RSS then grows with the worker count and the run's length, not with the data
//! in flight. `malloc_trim` returns the free pages of every arena; it costs well under a
//! millisecond, so calling it every few dozen megabytes of output is free.

/// Return the free pages of every malloc arena to the OS.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Allocations from this size up get a mapping of their own, unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_MAPPING: i32 = 256 * 1024;

/// Keep file-sized buffers out of the heap. glibc raises its mmap threshold each time a
/// mapped block is freed (up to 32 MB), after which file buffers of a few hundred KB are
/// carved from the arenas and leave them fragmented: packing a 3 GB env with many such
/// files held 40 MB more than a 1 GB one, all free memory. A fixed threshold stops that.
pub fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING);
    }
}
