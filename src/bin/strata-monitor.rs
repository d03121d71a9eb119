//! `strata-monitor --config PATH`: the per-container monitor, as its own small executable;
//! `strata-monitor pod-init --config PATH|-`: the process holding a pod's namespaces, here for
//! the same reason (it lives as long as its pod); `strata-monitor exec --config PATH`: the exec
//! helper, here because exec probes are kubelet's hottest call and this executable loads in a
//! fraction of the daemon's time (no relocations, a tenth of the size).
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
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [flag, path] if flag == "--config" => strata::monitor::monitor_main(&PathBuf::from(path)),
        // `--pod-dir DIR` only names the pod in the process list (see podinit::spawn).
        [sub, flag, path, rest @ ..]
            if sub == "pod-init"
                && flag == "--config"
                && (rest.is_empty() || (rest.len() == 2 && rest[0] == "--pod-dir")) =>
        {
            strata::podinit::pod_init_main(&PathBuf::from(path))
        }
        [sub, flag, path] if sub == "exec" && flag == "--config" => {
            strata::launcher::exec_main(&PathBuf::from(path))
        }
        _ => {
            eprintln!(
                "usage: strata-monitor [pod-init|exec] --config PATH [--pod-dir DIR] (spawned by the strata daemon)"
            );
            std::process::exit(2);
        }
    }
}
