//! `strata-monitor --config PATH`: the per-container monitor, as its own small executable.
//!
//! Why not `strata monitor`: a monitor lives as long as its container, so its memory is paid per
//! pod. Run from the 23 MB daemon binary it mapped 4.9 MB (the launcher, clap, tracing and tonic
//! text it faulted in) and its start-up dirtied the daemon's 630 kB of relocated `.data.rel.ro`.
//! This executable holds only the monitor and the launcher, parses its one flag by hand, and is
//! linked without PIE (build.rs) so nothing needs relocating at load. Only this binary gives up
//! ASLR of its own text; its inputs are a root-owned config file and a root-only control socket.
//! The daemon, which faces clients, stays a PIE.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let config = match (args.next(), args.next(), args.next()) {
        (Some(flag), Some(path), None) if flag == "--config" => PathBuf::from(path),
        _ => {
            eprintln!("usage: strata-monitor --config PATH (spawned by the strata daemon)");
            std::process::exit(2);
        }
    };
    strata::monitor::monitor_main(&config)
}
