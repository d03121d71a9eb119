#!/usr/bin/env bash
# Runs every test of strata: format and lint gates, unit tests, root integration tests against
# the real kernel and a loopback registry, and the CRI conformance specs against a live daemon.
# Run as root on a fresh Debian machine; it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "tests/run.sh: run as root (the tests mount, unpack device nodes and chown)" >&2; exit 1; }

tests/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build"
# The conformance test drives the strata-conformance binary, so build every binary first.
cargo build --workspace --bins
echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
