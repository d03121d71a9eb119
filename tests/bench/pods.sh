#!/usr/bin/env bash
# tests/bench/pods.sh - pod benchmark with CNI networking: strata against containerd 1.6 + runc
# (Debian's), both on the same CNI network config (bridge + host-local + portmap from Debian's
# containernetworking-plugins).
#
# A program that prints figures, not a test: it exits non-zero only when something breaks, never
# because a goal is missed. Run as root on this Debian machine; it installs what it needs from Debian
# and downloads nothing from anywhere else. Network traffic stays on 127.0.0.1 and the bench's
# own bridge.
#
#   tests/bench/pods.sh [--only strata|containerd] [--runs N] [--no-build] [--logs DIR]
#                       [--tmpfs-size SIZE]
#
#   --only R      benchmark one runtime alone; default: both, interleaved
#   --runs N      pod cycles per runtime (default 50)
#   --no-build    use the release binaries already in target/release
#   --logs DIR    copy the daemons' and the registry's logs and the bench output to DIR at the end
#   --tmpfs-size S  size of each runtime's tmpfs root and state (default 1G)
#
# What it does, in order:
#   1. installs missing Debian packages, builds strata and strata-conformance (release);
#   2. starts docker-registry on 127.0.0.1:<free port> and pushes two images it builds:
#      bench/busybox:1 (Debian's busybox with every applet linked) and bench/pause:1 (a static
#      C binary that sleeps until SIGTERM: containerd's sandbox image);
#   3. writes one CNI config (bridge `sbp<id>`, isGateway, host-local 10.236.0.0/16 with its data
#      in the run's directory, portmap) that both runtimes use, with the plugins in /usr/lib/cni;
#   4. mounts a fresh tmpfs for each runtime's root and state, starts strata and containerd;
#   5. `strata-conformance bench pods`: 1 warm-up + N cycles per runtime, interleaved, of
#      RunPodSandbox, CreateContainer+StartContainer of `sleep 3600`, ExecSync `true`,
#      StopPodSandbox+RemovePodSandbox; p50/p90 of RunPodSandbox, full pod start (the three
#      calls), ExecSync and teardown;
#   6. prints a summary with the goals of issue 4; the EXIT trap removes every pod, process,
#      cgroup, mount, interface, iptables rule and file the run made, also after a failure.
set -euo pipefail
# Functions the container, pod and streaming benches share (registry, images, runtimes, cleanup).
# shellcheck source=tests/bench/common.sh
source "$(dirname "$0")/common.sh"

REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=50
ONLY=both
BUILD=1
LOGS_DIR=
TMPFS_SIZE=1G
# Goals (issue 4): strata's p50 as a fraction of containerd's.
GOAL_FULL_START_RATIO=0.25
GOAL_EXEC_SYNC_RATIO=0.3

log() { printf '[pods.sh] %s\n' "$*" >&2; }
die() { printf '[pods.sh] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
	case $1 in
	--only) ONLY=${2:?}; shift 2 ;;
	--runs) RUNS=${2:?}; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--logs) LOGS_DIR=${2:?}; shift 2 ;;
	--tmpfs-size) TMPFS_SIZE=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
case $ONLY in strata | containerd | both) ;; *) die "--only strata|containerd" ;; esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"
[[ $(id -u) == 0 ]] || die "run as root (it mounts tmpfs, makes cgroups and runs the runtimes)"

# Everything this run creates lives below WORK (the tmpfs mounts are inside it), except the
# cgroups (below CG_PARENT in every hierarchy) and containerd shims' sockets (/run/containerd/s,
# fixed in containerd 1.6; a shim removes its own when it exits).
WORK=$(mktemp -d /tmp/podbench.XXXXXX)
RUN_ID=${WORK##*.}
CG_PARENT=/strata-bench-$RUN_ID
IMAGES=$WORK/images
REG_DIR=$WORK/registry
POD_LOGS=$WORK/pod-logs
STRATA_ROOT=$WORK/strata-root
# Short: strata puts each container's monitor socket at <state>/c/<64-hex id>/m.sock, and a unix
# socket path must fit in 108 bytes (strata only finds out at CreateContainer).
STRATA_STATE=$WORK/ss
STRATA_SOCK=$STRATA_STATE/strata.sock
STRATA_LOG=$WORK/strata.log
CTD_ROOT=$WORK/containerd-root
CTD_STATE=$WORK/containerd-state
CTD_SOCK=$CTD_STATE/containerd.sock
CTD_LOG=$WORK/containerd.log
CTD_CONF_DIR=$WORK/containerd-conf
RUNC_ROOT=$WORK/runc-state
BENCH_OUT=$WORK/bench-pods.out
CNI_CONF_DIR=$WORK/cni/net.d
CNI_BIN_DIR=/usr/lib/cni
CNI_NET=strata-bench-$RUN_ID
# Interface names are at most 15 bytes; mktemp's suffix is 6.
CNI_BRIDGE=sbp$RUN_ID
CNI_SUBNET=10.236.0.0/16
IP_FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
HOSTPORT_CHAINS_BEFORE=0
iptables -w -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 && HOSTPORT_CHAINS_BEFORE=1
# Inherited by strata's monitors and pod-init processes: how cleanup finds them.
MARKER=STRATA_PODS_BENCH=$WORK
STRATA_PID='' CTD_PID='' REG_PID='' BENCH_PID='' REG=''
HAD_RUN_CONTAINERD=0
[[ -e /run/containerd ]] && HAD_RUN_CONTAINERD=1
STRATA_BIN=$REPO/target/release/strata
CONF_BIN=$REPO/target/release/strata-conformance
BUSYBOX_IMAGE='' PAUSE_IMAGE='' BUSYBOX_BYTES=''

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on every exit (success, error, Ctrl-C). Ends only what this run started: by pid,
# by the environment marker, by containerd's socket in the shims' command line, by cgroup.
# ---------------------------------------------------------------------------------------------

# ask_cleanup NAME SOCK PID: while the runtime still runs, has it remove the bench's pods through
# the CRI (bench pods-cleanup), so that it unmounts and deletes what it made itself.
ask_cleanup() {
	local name=$1 sock=$2 pid=$3
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ -S $sock ]] || return 0
	timeout 120 "$CONF_BIN" --endpoint "unix://$sock" bench pods-cleanup >/dev/null 2>&1 ||
		log "$name: removing the bench's pods through the CRI failed; killing what is left"
}

# The bridge, the iptables rules portmap tagged with our network's name (and its top-level chains
# when they did not exist before), and IPv4 forwarding as it was (the bridge plugin turns it on).
cleanup_network() {
	local rule chain
	ip link del "$CNI_BRIDGE" 2>/dev/null
	while read -r rule; do
		[[ -n $rule ]] || continue
		chain=$(grep -oE -- '-j CNI-DN-[0-9a-f]+' <<<"$rule" | cut -d' ' -f2)
		eval "iptables -w -t nat -D ${rule#-A }" 2>/dev/null
		if [[ -n $chain ]]; then
			iptables -w -t nat -F "$chain" 2>/dev/null
			iptables -w -t nat -X "$chain" 2>/dev/null
		fi
	done < <(iptables -w -t nat -S 2>/dev/null | grep -F -- "name: \"$CNI_NET\"")
	if ((!HOSTPORT_CHAINS_BEFORE)); then
		while read -r rule; do
			[[ -n $rule ]] && eval "iptables -w -t nat -D ${rule#-A }" 2>/dev/null
		done < <(iptables -w -t nat -S 2>/dev/null | grep -E -- '-j CNI-HOSTPORT-(DNAT|SETMARK|MASQ)')
		for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do
			iptables -w -t nat -F "$chain" 2>/dev/null
			iptables -w -t nat -X "$chain" 2>/dev/null
		done
	fi
	echo "$IP_FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward
}

cleanup() {
	local rc=$? m pids socks
	trap - EXIT INT TERM
	set +e
	((rc == 0)) || log "failed (exit $rc): cleaning up"
	stop_pid strata-conformance "$BENCH_PID"
	ask_cleanup strata "$STRATA_SOCK" "$STRATA_PID"
	ask_cleanup containerd "$CTD_SOCK" "$CTD_PID"
	stop_pid strata "$STRATA_PID"
	stop_pid containerd "$CTD_PID"
	mapfile -t pids < <(marked_pids)
	if ((${#pids[@]})); then
		log "ending leftover strata helpers: ${pids[*]}"
		kill -KILL "${pids[@]}" 2>/dev/null
	fi
	mapfile -t pids < <(our_shims)
	if ((${#pids[@]})); then
		# A killed shim leaves its socket in /run/containerd/s: note them first.
		local re
		re="pid=($(IFS='|'; echo "${pids[*]}")),"
		mapfile -t socks < <(ss -Hxlp 2>/dev/null | grep -E -- "$re" |
			grep -oE '/run/containerd/s/[0-9a-f]+' | sort -u || true)
		log "ending leftover containerd shims: ${pids[*]}"
		kill -KILL "${pids[@]}" 2>/dev/null
		((${#socks[@]})) && rm -f "${socks[@]}"
	fi
	remove_cgroups
	cleanup_network
	if ((!HAD_RUN_CONTAINERD)); then
		rmdir /run/containerd/s /run/containerd 2>/dev/null
	fi
	stop_pid registry "$REG_PID"
	if ((rc != 0)); then
		for f in "$STRATA_LOG" "$CTD_LOG"; do
			[[ -s $f ]] || continue
			log "last lines of $f:"
			tail -n 20 "$f" | sed 's/^/    /' >&2
		done
	fi
	if [[ -n $LOGS_DIR ]]; then
		mkdir -p "$LOGS_DIR"
		cp -f "$STRATA_LOG" "$CTD_LOG" "$REG_DIR/registry.log" "$BENCH_OUT" "$WORK/bench-pods.err" \
			"$LOGS_DIR/" 2>/dev/null
		log "logs copied to $LOGS_DIR"
	fi
	for m in $(mounts_below_work); do
		umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null || log "cannot unmount $m"
	done
	if [[ -n $(mounts_below_work) ]]; then
		log "mounts left below $WORK, not removing it:"
		mounts_below_work >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Packages and binaries
# ---------------------------------------------------------------------------------------------

ensure_packages() {
	local p missing=()
	# The benchmark's own needs (gcc + libc6-dev: the static pause binary), then what building
	# strata-conformance needs (k8s-cri runs protoc).
	for p in docker-registry containerd runc busybox curl jq gzip tar coreutils iproute2 \
		containernetworking-plugins iptables \
		gcc libc6-dev build-essential pkg-config protobuf-compiler; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing from Debian: ${missing[*]}"
	# Keep the packages' init scripts from starting the stock registry and containerd services.
	local made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	((made_policy)) && rm -f /usr/sbin/policy-rc.d
	return 0
}

build() {
	local args=(build --release --bins -p strata-conformance)
	want strata && args+=(-p strata)
	log "cargo ${args[*]}"
	(cd "$REPO" && cargo "${args[@]}") || die "build failed"
}

# ---------------------------------------------------------------------------------------------
# 2. Registry and images
# ---------------------------------------------------------------------------------------------

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------------------------------------
# 3-4. tmpfs roots and the runtimes
# ---------------------------------------------------------------------------------------------

# mount_tmpfs DIR: a fresh tmpfs at DIR.
mount_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0711" "podbench-$(basename "$1")" "$1"
}

start_strata() {
	mount_tmpfs "$STRATA_ROOT"
	mount_tmpfs "$STRATA_STATE"
	cat >"$WORK/strata.toml" <<-EOF
		root = "$STRATA_ROOT"
		state = "$STRATA_STATE"
		socket = "$STRATA_SOCK"

		[log]
		level = "info"

		[runtime]
		# The bench gives every pod its own cgroup_parent below $CG_PARENT/strata; this one is
		# for pods that name none.
		cgroup_parent = "$CG_PARENT/strata-default"

		[network]
		cni_conf_dir = "$CNI_CONF_DIR"
		cni_bin_dirs = ["$CNI_BIN_DIR"]
	EOF
	env "$MARKER" "$STRATA_BIN" serve --config "$WORK/strata.toml" >"$STRATA_LOG" 2>&1 </dev/null &
	STRATA_PID=$!
	wait_cri strata "$STRATA_SOCK" "$STRATA_PID" "$STRATA_LOG"
	log "strata: pid $STRATA_PID, root $STRATA_ROOT and state $STRATA_STATE (fresh tmpfs each)"
}

# containerd 1.6 as in /work/shared/harness/containerd.sh, but entirely private to this run: own
# root and state (fresh tmpfs each), socket, config, registry hosts and runc state directory. The
# CNI config is the bench's (the same as strata's).
start_containerd() {
	mount_tmpfs "$CTD_ROOT"
	mount_tmpfs "$CTD_STATE"
	mkdir -p "$CTD_CONF_DIR/certs.d/$REG" "$RUNC_ROOT"
	cat >"$CTD_CONF_DIR/config.toml" <<-EOF
		version = 2
		root = "$CTD_ROOT"
		state = "$CTD_STATE"
		# Snapshotters that cannot work here only add noise to the log.
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

		[grpc]
		  address = "$CTD_SOCK"

		[plugins]
		  [plugins."io.containerd.internal.v1.opt"]
		    path = "$CTD_ROOT/opt"
		  [plugins."io.containerd.grpc.v1.cri"]
		    sandbox_image = "$PAUSE_IMAGE"
		    stream_server_address = "127.0.0.1"
		    stream_server_port = "0"
		    enable_selinux = false
		    # This machine withholds CAP_SYS_RESOURCE even from root.
		    restrict_oom_score_adj = true
		    [plugins."io.containerd.grpc.v1.cri".containerd]
		      snapshotter = "overlayfs"
		      default_runtime_name = "runc"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		        runtime_type = "io.containerd.runc.v2"
		        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		          BinaryName = "/usr/sbin/runc"
		          Root = "$RUNC_ROOT"
		          SystemdCgroup = false
		    [plugins."io.containerd.grpc.v1.cri".cni]
		      bin_dir = "$CNI_BIN_DIR"
		      conf_dir = "$CNI_CONF_DIR"
		    [plugins."io.containerd.grpc.v1.cri".registry]
		      config_path = "$CTD_CONF_DIR/certs.d"
	EOF
	cat >"$CTD_CONF_DIR/certs.d/$REG/hosts.toml" <<-EOF
		# The benchmark's registry is plain HTTP on loopback.
		server = "http://$REG"

		[host."http://$REG"]
		  capabilities = ["pull", "resolve"]
		  skip_verify = true
	EOF
	containerd --config "$CTD_CONF_DIR/config.toml" >"$CTD_LOG" 2>&1 </dev/null &
	CTD_PID=$!
	wait_cri containerd "$CTD_SOCK" "$CTD_PID" "$CTD_LOG"
	log "containerd: $(containerd --version | awk '{print $3}') + runc $(runc --version | awk 'NR == 1 {print $3}'), pid $CTD_PID, root $CTD_ROOT and state $CTD_STATE (fresh tmpfs each, overlayfs snapshotter), sandbox image $PAUSE_IMAGE"
}

# The one CNI network both runtimes use.
write_cni_config() {
	mkdir -p "$CNI_CONF_DIR" "$WORK/cni/ipam"
	cat >"$CNI_CONF_DIR/10-bench.conflist" <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "$CNI_NET",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "$CNI_BRIDGE",
		      "isGateway": true,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "ranges": [[{ "subnet": "$CNI_SUBNET" }]],
		        "dataDir": "$WORK/cni/ipam"
		      }
		    },
		    { "type": "portmap", "capabilities": { "portMappings": true } }
		  ]
		}
	EOF
	log "CNI: $CNI_CONF_DIR/10-bench.conflist (bridge $CNI_BRIDGE, host-local $CNI_SUBNET, portmap), plugins in $CNI_BIN_DIR (containernetworking-plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins))"
}

# ---------------------------------------------------------------------------------------------
# 5. Measurements
# ---------------------------------------------------------------------------------------------

run_bench() {
	local rc=0
	log "bench pods: $RUNS cycles per runtime$([[ $ONLY == both ]] && echo ', interleaved')"
	mkdir -p "$POD_LOGS"
	# shellcheck disable=SC2046 # bench_on is meant to split
	"$CONF_BIN" $(bench_on) --runs "$RUNS" pods --image "$BUSYBOX_IMAGE" \
		--cgroup-parent "$CG_PARENT" --log-dir "$POD_LOGS" \
		>"$BENCH_OUT" 2> >(tee "$WORK/bench-pods.err" >&2) &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=''
	cat "$BENCH_OUT"
	((rc == 0)) || die "strata-conformance bench pods failed (exit $rc)"
}

# ---------------------------------------------------------------------------------------------
# 6. Summary
# ---------------------------------------------------------------------------------------------

num='\([0-9.]*\)'
# lat RUNTIME KEY: "P50 P90" in ms.
lat() { sed -n "s/^pods $1: $2 p50 $num ms p90 $num ms.*/\\1 \\2/p" "$BENCH_OUT"; }
ratio() { sed -n "s/^ratio .* $1 p50: $num$/\\1/p" "$BENCH_OUT"; }
verdict() {
	[[ -n $1 ]] || { echo "not measured"; return; }
	awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l) ? "MET" : "NOT MET" }'
}

summary() {
	local r k v
	echo
	echo "======================= pod benchmark: summary ======================="
	echo "image        $BUSYBOX_IMAGE (Debian busybox $(dpkg-query -W -f '${Version}' busybox)), container command sleep 3600"
	echo "network      CNI $CNI_NET: bridge $CNI_BRIDGE + host-local $CNI_SUBNET + portmap (containernetworking-plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins)), same config for both"
	echo "method       $RUNS cycles per runtime$([[ $ONLY == both ]] && echo ', interleaved'), 1 warm-up each; nearest-rank percentiles"
	want strata && echo "runtime      strata (release build, built-in launcher, pod-init); root and state on fresh tmpfs"
	want containerd && echo "runtime      containerd $(containerd --version | awk '{print $3}') + runc $(runc --version | awk 'NR == 1 {print $3}') (runc.v2 shim, overlayfs, sandbox image $PAUSE_IMAGE); root and state on fresh tmpfs"
	echo
	printf '%-12s %-22s %-22s %-22s %-22s\n' "p50 / p90" RunPodSandbox "full pod start" "ExecSync true" "teardown"
	for r in strata containerd; do
		want "$r" || continue
		printf '%-12s' "$r"
		for k in run-pod full-start exec-sync teardown; do
			v=$(lat "$r" "$k" | sed 's# # / #')
			printf ' %-22s' "${v:-?} ms"
		done
		echo
	done
	if [[ $ONLY == both ]]; then
		printf '%-12s' "ratio p50"
		for k in run-pod full-start exec-sync teardown; do
			v=$(ratio "$k")
			printf ' %-22s' "${v:-?}"
		done
		echo
		echo
		v=$(ratio full-start)
		echo "goal         full pod start p50 <= $GOAL_FULL_START_RATIO x containerd's: ${v:-?}: $(verdict "$v" "$GOAL_FULL_START_RATIO")"
		v=$(ratio exec-sync)
		echo "goal         ExecSync p50 <= $GOAL_EXEC_SYNC_RATIO x containerd's: ${v:-?}: $(verdict "$v" "$GOAL_EXEC_SYNC_RATIO")"
	fi
	echo "======================================================================"
}

main() {
	ensure_packages
	if ((BUILD)); then build; fi
	[[ -x $CONF_BIN ]] || die "no $CONF_BIN (build it, or drop --no-build)"
	if want strata && [[ ! -x $STRATA_BIN ]]; then die "no $STRATA_BIN"; fi
	start_registry
	build_images
	write_cni_config
	if want strata; then start_strata; fi
	if want containerd; then start_containerd; fi
	run_bench
	summary
}

main
