//! Giving memory back to the system after a flood.
//!
//! glibc's malloc keeps what a process frees: in each thread's arena (up to eight per
//! core) and, for large blocks, in the heap rather than in a mapping of their own once
//! one such block was freed (its mmap threshold rises to the largest block freed, up to
//! 32 MiB, and the trim threshold with it). free() hands pages back only from the top
//! of the main heap, above that trim threshold, so after a flood the resident size
//! stays near its peak, though the memory is free and reused by the next flood.
//! malloc_trim(3) hands back the free pages of every arena (madvise DONTNEED); pages
//! used again later are faulted in anew, which costs little next to what a flood does.

/// Hands the free pages of the allocator's heaps back to the system.
#[allow(unsafe_code)]
pub fn give_back_free_memory() {
    // SAFETY: malloc_trim(3) only returns free memory of the allocator's own heaps; it
    // takes no pointer and is safe to call at any time, from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
