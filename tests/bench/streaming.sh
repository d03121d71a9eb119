#!/usr/bin/env bash
# tests/bench/streaming.sh - CRI streaming benchmark (issue 5): exec session setup latency and
# port-forward throughput, strata against containerd 1.6 + runc (Debian's).
#
# A program that prints figures, not a test: it exits non-zero only when something breaks, never
# because a goal is missed. Run as root on this Debian machine; it installs what it needs from Debian
# and downloads nothing from anywhere else. All network traffic stays on 127.0.0.1 or inside the
# pods' network namespaces.
#
#   tests/bench/streaming.sh [--only strata|containerd] [--runs N] [--pf-runs N] [--bytes B]
#                            [--debug] [--no-build] [--logs DIR] [--tmpfs-size SIZE]
#
#   --only R      benchmark one runtime alone; default: both, interleaved
#   --runs N      exec sessions per runtime (default 100)
#   --pf-runs N   port-forward transfers per runtime (default 5)
#   --bytes B     bytes per port-forward transfer (default 100000000, rounded up to whole MiB)
#   --debug       build and use the debug binaries (quicker to build; slower SPDY)
#   --no-build    use the binaries already in target/release (target/debug with --debug)
#   --logs DIR    copy the daemons' and the registry's logs and the bench output to DIR at the end
#   --tmpfs-size S  size of each runtime's tmpfs root and state (default 1G)
#
# What it does, in order:
#   1. installs missing Debian packages (containernetworking-plugins too), builds strata and
#      strata-conformance;
#   2. starts docker-registry on 127.0.0.1:<free port> and pushes bench/busybox:1 (Debian's busybox
#      with every applet linked) and bench/pause:1 (containerd's sandbox image);
#   3. mounts a fresh tmpfs for each runtime's root and state;
#   4. starts strata and containerd, each with its own root, state, socket and config, and one
#      private CNI network for both (a bridge named after the run, no gateway address, no
#      masquerade, host-local IPAM state in the run's directory);
#   5. `strata-conformance bench exec-stream`: one pod (own network namespace) with a `sleep`
#      container per runtime; per session the Exec RPC (`echo hi`, stdout only), the HTTP upgrade
#      to SPDY/3.1 and the streams error + stdout until the first stdout byte; runtimes
#      interleaved, p50/p90;
#   6. `strata-conformance bench portforward`: a container serving B zero bytes with busybox nc
#      on port 8080 inside the pod's network namespace; per transfer the PortForward RPC, SPDY,
#      the streams error + data (port header) and reading all B bytes: MB/s;
#   7. prints a summary with the goals of issue 5; the EXIT trap removes every pod, process,
#      cgroup, mount, interface and file the run made, also after a failure or Ctrl-C.
set -euo pipefail
# Functions the container, pod and streaming benches share (registry, images, runtimes, cleanup).
# shellcheck source=tests/bench/common.sh
source "$(dirname "$0")/common.sh"

REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=100
PF_RUNS=5
BYTES=100000000
PROFILE=release
ONLY=both
BUILD=1
LOGS_DIR=
TMPFS_SIZE=1G
# Goals (issue 5), for strata, relative to containerd.
GOAL_SETUP_RATIO=0.3
GOAL_THROUGHPUT_RATIO=1.0

log() { printf '[streaming.sh] %s\n' "$*" >&2; }
die() { printf '[streaming.sh] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
	case $1 in
	--only) ONLY=${2:?}; shift 2 ;;
	--runs) RUNS=${2:?}; shift 2 ;;
	--pf-runs) PF_RUNS=${2:?}; shift 2 ;;
	--bytes) BYTES=${2:?}; shift 2 ;;
	--debug) PROFILE=debug; shift ;;
	--no-build) BUILD=0; shift ;;
	--logs) LOGS_DIR=${2:?}; shift 2 ;;
	--tmpfs-size) TMPFS_SIZE=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
case $ONLY in strata | containerd | both) ;; *) die "--only strata|containerd" ;; esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"
[[ $PF_RUNS =~ ^[1-9][0-9]*$ ]] || die "--pf-runs wants a positive number"
[[ $BYTES =~ ^[1-9][0-9]*$ ]] || die "--bytes wants a positive number"
[[ $(id -u) == 0 ]] || die "run as root (it mounts tmpfs, makes cgroups and runs the runtimes)"

# Everything this run creates lives below WORK (the tmpfs mounts are inside it), except the
# cgroups (below CG_PARENT in every hierarchy) and containerd shims' sockets (/run/containerd/s,
# fixed in containerd 1.6; a shim removes its own when it exits).
WORK=$(mktemp -d /tmp/strbench.XXXXXX)
RUN_ID=${WORK##*.}
CG_PARENT=/strata-streaming-bench-$RUN_ID
# containerd's CNI bridge (at most 15 characters).
CNI_BRIDGE=stb$RUN_ID
IMAGES=$WORK/images
REG_DIR=$WORK/registry
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
BENCH_OUT=$WORK/bench-streaming.out
# Inherited by strata's monitors and pod-init processes: how cleanup finds them.
MARKER=STRATA_STREAMING_BENCH=$WORK
STRATA_PID='' CTD_PID='' REG_PID='' BENCH_PID='' REG=''
HAD_RUN_CONTAINERD=0
[[ -e /run/containerd ]] && HAD_RUN_CONTAINERD=1
STRATA_BIN=$REPO/target/$PROFILE/strata
CONF_BIN=$REPO/target/$PROFILE/strata-conformance
BUSYBOX_IMAGE='' PAUSE_IMAGE='' BUSYBOX_BYTES=''

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on every exit (success, error, Ctrl-C). Ends only what this run started: by pid,
# by the environment marker, by containerd's socket in the shims' command line, by cgroup.
# ---------------------------------------------------------------------------------------------

# ask_cleanup NAME SOCK PID: while the runtime still runs, has it remove the bench's pods through
# the CRI (bench containers-cleanup), so that it unmounts and deletes what it made itself.
ask_cleanup() {
	local name=$1 sock=$2 pid=$3
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ -S $sock ]] || return 0
	timeout 120 "$CONF_BIN" --endpoint "unix://$sock" bench containers-cleanup >/dev/null 2>&1 ||
		log "$name: removing the bench's pods through the CRI failed; killing what is left"
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
	ip link del "$CNI_BRIDGE" 2>/dev/null
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
		cp -f "$STRATA_LOG" "$CTD_LOG" "$REG_DIR/registry.log" "$BENCH_OUT" "$WORK/bench-streaming.err" \
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
		containernetworking-plugins \
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
	local args=(build --bins -p strata-conformance)
	[[ $PROFILE == release ]] && args+=(--release)
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
	mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0711" "ctrbench-$(basename "$1")" "$1"
}

# One private CNI network for both runtimes' pods: both need an interface with an address before
# a pod is ready; nothing routes to or from it (no gateway address on the bridge, no
# masquerade): port-forward dials 127.0.0.1 in the pod.
write_cni_config() {
	[[ -e $WORK/cni/net.d/10-bench.conflist ]] && return 0
	mkdir -p "$WORK/cni/net.d" "$WORK/cni/ipam"
	cat >"$WORK/cni/net.d/10-bench.conflist" <<-EOF
		{"cniVersion": "0.4.0", "name": "strata-streaming-bench", "plugins": [
		  {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": false, "ipMasq": false,
		   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.231.$((RANDOM % 250)).0/24"}]],
		            "dataDir": "$WORK/cni/ipam"}}]}
	EOF
}

start_strata() {
	mount_tmpfs "$STRATA_ROOT"
	mount_tmpfs "$STRATA_STATE"
	write_cni_config
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
		cni_conf_dir = "$WORK/cni/net.d"
		cni_bin_dirs = ["/usr/lib/cni"]
	EOF
	env "$MARKER" "$STRATA_BIN" serve --config "$WORK/strata.toml" >"$STRATA_LOG" 2>&1 </dev/null &
	STRATA_PID=$!
	wait_cri strata "$STRATA_SOCK" "$STRATA_PID" "$STRATA_LOG"
	log "strata: pid $STRATA_PID, root $STRATA_ROOT and state $STRATA_STATE (fresh tmpfs each)"
}

# containerd 1.6 as in /work/shared/harness/containerd.sh, but entirely private to this run: own
# root and state (fresh tmpfs each), socket, config, registry hosts and runc state directory, and
# a private CNI network for its pods.
start_containerd() {
	mount_tmpfs "$CTD_ROOT"
	mount_tmpfs "$CTD_STATE"
	mkdir -p "$CTD_CONF_DIR/certs.d/$REG" "$RUNC_ROOT"
	write_cni_config
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
		      bin_dir = "/usr/lib/cni"
		      conf_dir = "$WORK/cni/net.d"
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

# ---------------------------------------------------------------------------------------------
# 5. Measurements
# ---------------------------------------------------------------------------------------------

# The bench runs in the background with the script waiting for it: bash runs a trap only once
# the foreground command is done, and this way TERM/INT clean up at once.
# run_bench ARGS...: one strata-conformance bench run, its output appended to BENCH_OUT.
run_bench() {
	local rc=0
	# shellcheck disable=SC2046 # bench_on is meant to split
	"$CONF_BIN" $(bench_on) "$@" --image "$BUSYBOX_IMAGE" --cgroup-parent "$CG_PARENT" \
		>>"$BENCH_OUT" 2> >(tee -a "$WORK/bench-streaming.err" >&2) &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=''
	((rc == 0)) || { cat "$BENCH_OUT"; die "strata-conformance bench $1 $2 $3 failed (exit $rc)"; }
}

run_benches() {
	: >"$BENCH_OUT"
	log "bench exec-stream: $RUNS sessions per runtime$([[ $ONLY == both ]] && echo ', interleaved')"
	run_bench --runs "$RUNS" exec-stream
	log "bench portforward: $PF_RUNS transfers of $BYTES bytes per runtime$([[ $ONLY == both ]] && echo ', interleaved')"
	run_bench --runs "$PF_RUNS" portforward --bytes "$BYTES"
	cat "$BENCH_OUT"
}

# ---------------------------------------------------------------------------------------------
# 7. Summary
# ---------------------------------------------------------------------------------------------

num='\([0-9.]*\)'
# setup RUNTIME: "P50 P90" in ms.
setup() { sed -n "s/^exec-stream $1: .* p50 $num ms p90 $num ms.*/\\1 \\2/p" "$BENCH_OUT"; }
# rate RUNTIME: median MB/s.
rate() { sed -n "s/^portforward $1: .* MB\/s p50 $num .*/\\1/p" "$BENCH_OUT"; }
# verdict VALUE OP LIMIT: MET / NOT MET / not measured.
verdict() {
	[[ -n $1 && -n $3 ]] || { echo "not measured"; return; }
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "MET" : "NOT MET" }'
}
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }'; }

summary() {
	local r sp pf s_p50 c_p50 s_mb c_mb
	echo
	echo "==================== streaming benchmark: summary ===================="
	echo "image        $BUSYBOX_IMAGE (Debian busybox $(dpkg-query -W -f '${Version}' busybox)); pods with their own network namespace"
	echo "client       strata's SPDY/3.1 client (client-go behaviour: streams opened one at a time, each waiting for its SYN_REPLY)"
	echo "exec-stream  $RUNS sessions per runtime$([[ $ONLY == both ]] && echo ', interleaved'), 1 warm-up each: Exec RPC (echo hi, stdout only) + upgrade + streams error, stdout until the first stdout byte"
	echo "portforward  $PF_RUNS transfers per runtime, 1 warm-up each: PortForward RPC + upgrade + streams error, data + reading $BYTES bytes (whole MiB) from busybox nc in the pod"
	want strata && echo "runtime      strata ($PROFILE build)"
	want containerd && echo "runtime      containerd $(containerd --version | awk '{print $3}') + runc $(runc --version | awk 'NR == 1 {print $3}')"
	echo
	printf '%-12s %-30s %-20s\n' runtime "setup p50 / p90" "port-forward MB/s p50"
	for r in strata containerd; do
		want "$r" || continue
		sp=$(setup "$r" | tr ' ' /)
		pf=$(rate "$r")
		printf '%-12s %-30s %-20s\n' "$r" "${sp:-?} ms" "${pf:-?}"
	done
	if [[ $ONLY == both ]]; then
		s_p50=$(setup strata | cut -d' ' -f1)
		c_p50=$(setup containerd | cut -d' ' -f1)
		s_mb=$(rate strata)
		c_mb=$(rate containerd)
		echo "ratio        strata/containerd setup p50: $(ratio "$s_p50" "$c_p50"); port-forward MB/s: $(ratio "$s_mb" "$c_mb")"
		echo "goal         strata setup p50 <= $GOAL_SETUP_RATIO x containerd's: $(verdict "$(ratio "$s_p50" "$c_p50")" '<=' "$GOAL_SETUP_RATIO")"
		echo "goal         strata port-forward throughput >= containerd's: $(verdict "$(ratio "$s_mb" "$c_mb")" '>=' "$GOAL_THROUGHPUT_RATIO")"
	else
		echo "goals        need both runtimes (ratios to containerd)"
	fi
	echo "======================================================================"
}

# `if` rather than `want X && f`: bash ignores set -e inside a function called from an && list.
main() {
	ensure_packages
	if ((BUILD)); then build; fi
	[[ -x $CONF_BIN ]] || die "no $CONF_BIN (build it, or drop --no-build)"
	if want strata && [[ ! -x $STRATA_BIN ]]; then die "no $STRATA_BIN"; fi
	start_registry
	build_images
	if want strata; then start_strata; fi
	if want containerd; then start_containerd; fi
	run_benches
	summary
}

main
