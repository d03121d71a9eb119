//! Giving back the memory only start-up needed (the monitor lives as long as its container),
//! after create, after start, and whenever the event loop goes idle after some work.
//!
//! - the heap: the config and the spec were parsed and dropped (`malloc_trim`);
//! - the stack below the current frame: deserializing an OCI spec and the launcher's setup go
//!   deep (about 90 KiB), the event loop stays shallow.
//!
//! - the executable's text: start-up runs the launcher (spec parsing, mount planning, the
//!   seccomp compiler), which the event loop never calls again. Text is a clean private file
//!   mapping, so dropping our page-table entries loses nothing; the loop faults back the little
//!   it uses. The kernel maps code back in 64 KiB windows around each fault (fault-around;
//!   `MADV_RANDOM` does not stop it on current kernels), so a burst of work leaves far more
//!   mapped than it ran: hence the shed after every busy spell. (In the full daemon binary this was no gain: its event loop touched code spread
//!   over the whole 23 MB. The separate `strata-monitor` executable is compact.)
//!
//! Call only from the single-threaded monitor, with no signal handlers installed.

/// Releases start-up memory; best effort.
pub(crate) fn shed_memory() {
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    trim_stack();
    drop_text();
}

/// Drops this process's page-table entries of its executable's text (`r-xp` mappings only:
/// those are never written, so no private copy can be lost; `.data.rel.ro` and the GOT are not
/// touched).
fn drop_text() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if perms != "r-xp" || fields.nth(3) != Some(exe.as_ref()) {
            continue;
        }
        if let Some((start, end)) = parse_range(range) {
            // SAFETY: a read-only, never-written file mapping of our own executable; the kernel
            // refaults its pages from the page cache on the next execution of that code.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
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
