//! Giving memory back to the system after a flood.
//!
//! glibc's malloc keeps what a process frees: in each thread's arena (up to eight per
//! core) and, for large blocks, in the heap rather than in a mapping of their own once
//! one such block was freed (its mmap threshold rises to the largest block freed, up to
//! 32 MiB, and the trim threshold with it). free() hands pages back only from the top
//! of the main heap, above that trim threshold, so after a flood the resident size
//! stays near its peak, though the memory is free and reused by the next flood.
//! malloc_trim(3) hands back the free pages in the bins of every arena (madvise
//! DONTNEED); pages used again later are faulted in anew, which costs little next to
//! what a flood does. It leaves the free top of a thread's arena alone, though, and a
//! freed 19 MiB Argon2 block sits there: hence [`tune_allocator`] at start-up.

/// Hands the free pages of the allocator's heaps back to the system.
#[allow(unsafe_code)]
pub fn give_back_free_memory() {
    // SAFETY: malloc_trim(3) only returns free memory of the allocator's own heaps; it
    // takes no pointer and is safe to call at any time, from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Set once at start-up, before the threads start:
///
/// - a fixed mmap threshold of 4 MiB: a block that large (Argon2's memory) is always a
///   mapping of its own, unmapped as soon as it is freed, and the trim threshold stays
///   at its default (128 KiB), so free() hands back the top of a heap past it. Left
///   dynamic, the threshold rose past 19 MiB after the first Argon2 block was freed,
///   and the next ones, freed, stayed resident for good (malloc_trim cannot reach the
///   top of a thread's arena);
/// - at most one arena per core instead of eight: each arena keeps some memory in use
///   and some pages part-free after a flood; one per core still spares the threads of
///   a core each other's lock.
#[allow(unsafe_code)]
pub fn tune_allocator() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let cores = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt(3) sets the allocator's parameters; it takes no pointer. Failure
    // (0) leaves the default, which is only bigger.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, cores);
    }
}
