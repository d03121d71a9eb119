#!/usr/bin/env bash
# Builds strata, installs it with a default config if there is none, and runs the daemon in the
# foreground on unix:///run/strata/strata.sock. Run as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "manifests/start.sh: run as root" >&2; exit 1; }

missing=()
for p in build-essential pkg-config containernetworking-plugins iptables; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --release --bin strata --bin strata-monitor
install -m 0755 target/release/strata target/release/strata-monitor /usr/local/bin/
config=${STRATA_CONFIG:-/etc/strata/config.toml}
if [[ ! -f $config ]]; then
	install -d -m 0755 "$(dirname "$config")"
	/usr/local/bin/strata config default >"$config"
	echo "wrote the default config to $config"
fi
# Pods need a CNI network. strata itself never writes one: this script installs a default bridge
# network (bridge cni0, 10.88.0.0/16, host ports through portmap) when the directory has none.
# The loopback plugin is not needed: strata brings `lo` up in every pod.
cni_dir=/etc/cni/net.d
if ! compgen -G "$cni_dir/*.conflist" >/dev/null && ! compgen -G "$cni_dir/*.conf" >/dev/null &&
	! compgen -G "$cni_dir/*.json" >/dev/null; then
	install -d -m 0755 "$cni_dir"
	cat >"$cni_dir/10-strata-bridge.conflist" <<-'EOF'
		{
		  "cniVersion": "1.0.0",
		  "name": "strata",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "cni0",
		      "isGateway": true,
		      "ipMasq": true,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "ranges": [[{ "subnet": "10.88.0.0/16" }]],
		        "routes": [{ "dst": "0.0.0.0/0" }]
		      }
		    },
		    { "type": "portmap", "capabilities": { "portMappings": true } }
		  ]
		}
	EOF
	echo "wrote the default CNI network to $cni_dir/10-strata-bridge.conflist"
fi
exec /usr/local/bin/strata serve --config "$config"
