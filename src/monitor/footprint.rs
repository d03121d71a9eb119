//! Giving back the memory only start-up needed (the monitor lives as long as its container).
//!
//! - the heap: the config and the spec were parsed and dropped (`malloc_trim`);
//! - the stack below the current frame: deserializing an OCI spec and the launcher's setup go
//!   deep (about 90 KiB), the event loop stays shallow.
//!
//! (Unmapping the binary's text after start-up was tried and measured: no gain, the event loop
//! faults most of it back in, in page-cache-folio-sized pieces.)
//!
//! Call only from the single-threaded monitor, with no signal handlers installed.

/// Releases start-up memory; best effort.
pub(super) fn shed_startup_memory() {
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    trim_stack();
}

/// Drops the stack pages more than 16 KiB below the current frame.
#[inline(never)]
fn trim_stack() {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let page = 4096;
    let Some((start, _)) = mapping_of("[stack]") else {
        return;
    };
    let end = (sp.saturating_sub(16 * 1024)) & !(page - 1);
    if end > start {
        // SAFETY: [start, end) is below the live part of this (only) thread's stack, which no
        // frame, red zone or signal handler uses; the kernel zero-fills it if it is touched again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

fn mapping_of(name: &str) -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with(name))?;
    parse_range(line.split_whitespace().next()?)
}

fn parse_range(range: &str) -> Option<(usize, usize)> {
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}
