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
//!   mapped than it ran: hence the shed after every busy spell. The read-only data (strings,
//!   tables, unwind info) is dropped the same way. When the loop goes idle the drop is followed
//!   directly by the wait for the next event ([`shed_memory_then_poll`]), so that no code of
//!   ours runs in between to fault its windows back. (In the full daemon binary this was no
//!   gain: its event loop touched code spread over the whole 23 MB. The separate
//!   `strata-monitor` executable is compact.)
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

/// [`shed_memory`], then `poll(fds, no timeout)`: returns what poll returned.
pub(crate) fn shed_memory_then_poll(fds: &mut [libc::pollfd]) -> i32 {
    // SAFETY: as in shed_memory.
    unsafe {
        libc::malloc_trim(0);
    }
    trim_stack();
    drop_text();
    // SAFETY: `fds` is a valid array of pollfd of the given length, alive for the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) }
}

/// Drops this process's page-table entries of its executable's read-only mappings that hold
/// no private page: the text (`r-xp`) and the read-only data (`r--p`) are clean file pages the
/// kernel refaults from the page cache; a read-only mapping with anonymous pages (the RELRO
/// part, written by the dynamic loader before it was made read-only) is left alone, since
/// dropping it would lose those writes.
#[inline(always)]
fn drop_text() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let ranges = clean_read_only_ranges(&smaps, &exe.to_string_lossy());
    drop(smaps);
    // Nothing but this loop and the return to the event loop runs between the drop and the
    // next poll: every function called from here on faults its 64 KiB window back in.
    for &(start, end) in ranges.iter().flatten() {
        // SAFETY: a read-only mapping of our own executable without private pages (checked
        // above; read-only, so none can appear since); the kernel refaults its pages from the
        // page cache on the next access.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The read-only mappings of `exe` in `smaps` without anonymous pages (at most 8).
fn clean_read_only_ranges(smaps: &str, exe: &str) -> [Option<(usize, usize)>; 8] {
    let mut found = [None; 8];
    let mut n = 0;
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some(range) = parse_range(first).filter(|_| first.contains('-')) {
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3);
            current = (path == Some(exe) && (perms == "r-xp" || perms == "r--p")).then_some(range);
        } else if first == "Anonymous:"
            && let Some(range) = current.take()
            && fields.next() == Some("0")
            && n < found.len()
        {
            found[n] = Some(range);
            n += 1;
        }
    }
    found
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_clean_read_only_mappings_of_the_executable() {
        let smaps = "\
00200000-00391000 r--p 00000000 fe:00 5473119 /bin/m
Rss:                 320 kB
Anonymous:             0 kB
00391000-005b0000 r-xp 00190000 fe:00 5473119 /bin/m
Anonymous:             0 kB
005b0000-005f3000 r--p 003ae000 fe:00 5473119 /bin/m
Anonymous:            12 kB
005f3000-005f4000 rw-p 003f0000 fe:00 5473119 /bin/m
Anonymous:             4 kB
7f0000000000-7f0000001000 r-xp 00000000 fe:00 99 /lib/libc.so.6
Anonymous:             0 kB
";
        let got: Vec<_> = clean_read_only_ranges(smaps, "/bin/m")
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(got, vec![(0x200000, 0x391000), (0x391000, 0x5b0000)]);
    }
}
