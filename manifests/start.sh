#!/usr/bin/env bash
# Builds strata, installs it with a default config if there is none, and runs the daemon in the
# foreground on unix:///run/strata/strata.sock. Run as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "manifests/start.sh: run as root" >&2; exit 1; }

if ! dpkg -s build-essential >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential pkg-config
fi
cargo build --release --bin strata --bin strata-monitor
install -m 0755 target/release/strata target/release/strata-monitor /usr/local/bin/
config=${STRATA_CONFIG:-/etc/strata/config.toml}
if [[ ! -f $config ]]; then
	install -d -m 0755 "$(dirname "$config")"
	/usr/local/bin/strata config default >"$config"
	echo "wrote the default config to $config"
fi
exec /usr/local/bin/strata serve --config "$config"
