//! The strata-conformance behaviour specs against a real `strata serve`, with critest's test
//! images built by the test itself ([`support::fixtures`]) in a loopback registry.
//!
//! Needs the `strata-conformance` binary next to `strata` in the target directory:
//! `cargo build --workspace --bins` (as `tests/run.sh` does) or
//! `cargo build -p strata-conformance`; or point `STRATA_CONFORMANCE_BIN` at one.
//! `cargo test --test conformance -- --nocapture` shows the spec output as it runs.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::fixtures::push_cri_test_images;
use support::registry::{Registry, RegistryOptions};

/// Upper bound for the whole spec run (each spec has its own 300 s limit inside).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Fewer passing specs than this means specs were lost, not that strata got better.
const MIN_PASSED: usize = 20;

/// `STRATA_CONFORMANCE_BIN`, else `strata-conformance` beside the `strata` binary under test.
fn conformance_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("STRATA_CONFORMANCE_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "STRATA_CONFORMANCE_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_strata")).with_file_name("strata-conformance");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p strata-conformance` (or `cargo build --workspace \
         --bins`) before `cargo test`, or set STRATA_CONFORMANCE_BIN",
        bin.display()
    );
    bin
}

/// `N` from a summary line `N passed, 0 failed` (nothing failed, nothing skipped).
fn passed_count(line: &str) -> Option<usize> {
    line.strip_suffix(" passed, 0 failed")?.parse().ok()
}

#[test]
fn conformance_specs_pass_against_strata() {
    let bin = conformance_bin();
    let start = Instant::now();
    let registry = Registry::start(RegistryOptions::default());
    let pushed = push_cri_test_images(&registry);
    println!(
        "pushed {} fixture references to {} in {:.1} s",
        pushed.len(),
        registry.addr(),
        start.elapsed().as_secs_f64()
    );
    let daemon = Daemon::start("");

    let mut child = Command::new(&bin)
        .arg("--endpoint")
        .arg(format!("unix://{}", daemon.socket.display()))
        .arg("--registry")
        .arg(registry.addr())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    // Print spec lines as they come (the threads inherit the test's output capture).
    let stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("reading strata-conformance stdout");
            println!("{line}");
            lines.push(line);
        }
        lines
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let run_start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for strata-conformance") {
            break Some(status);
        }
        if run_start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    if !stderr.is_empty() {
        println!("--- strata-conformance stderr ---\n{stderr}");
    }
    println!(
        "specs ran in {:.1} s ({:.1} s in all)",
        run_start.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );

    let Some(status) = status else {
        panic!("strata-conformance did not finish within {RUN_TIMEOUT:?}");
    };
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(
        status.success(),
        "strata-conformance: {status}; last line {last:?}"
    );
    let passed = passed_count(last)
        .unwrap_or_else(|| panic!("last line {last:?}, want \"N passed, 0 failed\""));
    assert!(
        passed >= MIN_PASSED,
        "only {passed} specs passed, want at least {MIN_PASSED}"
    );
    drop(daemon);
    drop(registry);
}

#[test]
fn summary_line_parses() {
    assert_eq!(passed_count("23 passed, 0 failed"), Some(23));
    assert_eq!(passed_count("22 passed, 1 failed"), None);
    assert_eq!(passed_count("21 passed, 0 failed, 2 skipped"), None);
    assert_eq!(passed_count("FAIL x: y"), None);
}
