#!/usr/bin/env bash
# tests/bench/containers.sh - container lifecycle and memory benchmark: strata against
# containerd 1.6 + runc (Debian's).
#
# A program that prints figures, not a test: it exits non-zero only when something breaks, never
# because a goal is missed. Run as root on this Debian machine; it installs what it needs from Debian
# and downloads nothing from anywhere else. All network traffic stays on 127.0.0.1.
#
#   tests/bench/containers.sh [--only strata|containerd] [--runs N] [--pods LIST] [--no-build]
#                             [--logs DIR] [--tmpfs-size SIZE]
#
#   --only R      benchmark one runtime alone; default: both, interleaved
#   --runs N      create+start / stop+remove cycles per runtime (default 100)
#   --pods LIST   numbers of running pods at which memory is read (default 1,10,20; the goals
#                 read 1, 10 and 20)
#   --no-build    use the release binaries already in target/release
#   --logs DIR    copy the daemons' and the registry's logs and the bench output to DIR at the end
#   --tmpfs-size S  size of each runtime's tmpfs root and state (default 1G)
#
# What it does, in order:
#   1. installs missing Debian packages, builds strata and strata-conformance (release);
#   2. starts docker-registry on 127.0.0.1:<free port> and pushes two images it builds:
#      bench/busybox:1 (Debian's busybox with every applet linked, its libraries, /etc/passwd) and
#      bench/pause:1 (a static C binary that sleeps until SIGTERM: containerd's sandbox image);
#   3. mounts a fresh tmpfs for each runtime's root and state;
#   4. starts strata and containerd (sandbox_image = bench/pause:1, runc's state in the run's
#      directory), each with its own root, state, socket and config;
#   5. `strata-conformance bench containers`: both runtimes pull bench/busybox:1 and run one
#      hostNetwork pod (no CNI needed); 1 warm-up + N cycles of CreateContainer+StartContainer
#      then StopContainer(timeout 0)+RemoveContainer of `sleep 3600` in that pod, runtimes
#      interleaved (p50/p90); then pods (one container each) are added up to each count of
#      --pods and the daemon's and the helpers' (strata monitor / pod-init, containerd shim /
#      pause) RSS, PSS and USS are read from /proc/PID/smaps_rollup; every pod is removed;
#   6. prints a summary with the goals of issue 3; the EXIT trap removes every pod, process,
#      cgroup, mount and file the run made, also after a failure or Ctrl-C.
set -euo pipefail
# Functions the container, pod and streaming benches share (registry, images, runtimes, cleanup).
# shellcheck source=tests/bench/common.sh
source "$(dirname "$0")/common.sh"

REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=100
PODS=1,10,20
ONLY=both
BUILD=1
LOGS_DIR=
TMPFS_SIZE=1G
# Goals (issue 3), for strata.
GOAL_CREATE_START_MS=10
GOAL_MONITOR_RSS_MB=2
GOAL_MONITOR_PSS_MB=0.5
GOAL_DAEMON_RSS_MB=20

log() { printf '[containers.sh] %s\n' "$*" >&2; }
die() { printf '[containers.sh] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
	case $1 in
	--only) ONLY=${2:?}; shift 2 ;;
	--runs) RUNS=${2:?}; shift 2 ;;
	--pods) PODS=${2:?}; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--logs) LOGS_DIR=${2:?}; shift 2 ;;
	--tmpfs-size) TMPFS_SIZE=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
case $ONLY in strata | containerd | both) ;; *) die "--only strata|containerd" ;; esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"
[[ $PODS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--pods wants positive numbers separated by commas"
[[ $(id -u) == 0 ]] || die "run as root (it mounts tmpfs, makes cgroups and runs the runtimes)"

# Everything this run creates lives below WORK (the tmpfs mounts are inside it), except the
# cgroups (below CG_PARENT in every hierarchy) and containerd shims' sockets (/run/containerd/s,
# fixed in containerd 1.6; a shim removes its own when it exits).
WORK=$(mktemp -d /tmp/ctrbench.XXXXXX)
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
BENCH_OUT=$WORK/bench-containers.out
# Inherited by strata's monitors and pod-init processes: how cleanup finds them.
MARKER=STRATA_CONTAINERS_BENCH=$WORK
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
		cp -f "$STRATA_LOG" "$CTD_LOG" "$REG_DIR/registry.log" "$BENCH_OUT" "$WORK/bench-containers.err" \
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
	mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0711" "ctrbench-$(basename "$1")" "$1"
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
	EOF
	env "$MARKER" "$STRATA_BIN" serve --config "$WORK/strata.toml" >"$STRATA_LOG" 2>&1 </dev/null &
	STRATA_PID=$!
	wait_cri strata "$STRATA_SOCK" "$STRATA_PID" "$STRATA_LOG"
	log "strata: pid $STRATA_PID, root $STRATA_ROOT and state $STRATA_STATE (fresh tmpfs each)"
}

# containerd 1.6 as in /work/shared/harness/containerd.sh, but entirely private to this run: own
# root and state (fresh tmpfs each), socket, config, registry hosts and runc state directory. No
# CNI config: the pods use the host's network.
start_containerd() {
	mount_tmpfs "$CTD_ROOT"
	mount_tmpfs "$CTD_STATE"
	mkdir -p "$CTD_CONF_DIR/certs.d/$REG" "$WORK/cni/bin" "$WORK/cni/net.d" "$RUNC_ROOT"
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
		      bin_dir = "$WORK/cni/bin"
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
run_bench() {
	local rc=0
	log "bench containers: $RUNS cycles per runtime$([[ $ONLY == both ]] && echo ', interleaved'); memory with $PODS pods"
	mkdir -p "$POD_LOGS"
	# shellcheck disable=SC2046 # bench_on is meant to split
	"$CONF_BIN" $(bench_on) --runs "$RUNS" containers --image "$BUSYBOX_IMAGE" --pods "$PODS" \
		--cgroup-parent "$CG_PARENT" --log-dir "$POD_LOGS" \
		>"$BENCH_OUT" 2> >(tee "$WORK/bench-containers.err" >&2) &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=''
	cat "$BENCH_OUT"
	((rc == 0)) || die "strata-conformance bench containers failed (exit $rc)"
}

# ---------------------------------------------------------------------------------------------
# 6. Summary
# ---------------------------------------------------------------------------------------------

# get SED_REGEX: the first capture of the first bench output line matching it.
get() { sed -n "s/$1/\\1/p" "$BENCH_OUT" | head -n 1; }
num='\([0-9.]*\)'
# lat RUNTIME OP: "P50 P90" in ms.
lat() { sed -n "s/^containers $1: $2 p50 $num ms p90 $num ms.*/\\1 \\2/p" "$BENCH_OUT"; }
# helper_max RUNTIME PODS KIND: "RSS_MAX PSS_MAX" in MB of the helpers of KIND.
helper_max() {
	sed -n "s/^memory $1 pods=$2: $3 x[0-9]*: rss p50 $num MB max $num MB, pss p50 $num MB max $num MB.*/\\2 \\4/p" "$BENCH_OUT"
}
# verdict VALUE LIMIT: MET / NOT MET / not measured.
verdict() {
	[[ -n $1 ]] || { echo "not measured"; return; }
	awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l) ? "MET" : "NOT MET" }'
}

summary() {
	local r cs sr n line
	echo
	echo "==================== container benchmark: summary ===================="
	echo "image        $BUSYBOX_IMAGE (Debian busybox $(dpkg-query -W -f '${Version}' busybox), $BUSYBOX_BYTES bytes gzip), command sleep 3600"
	echo "pods         hostNetwork, one container each$(want containerd && echo "; containerd's sandbox image $PAUSE_IMAGE (static pause)")"
	echo "method       $RUNS create+start / stop(timeout 0)+remove cycles per runtime in one running pod$([[ $ONLY == both ]] && echo ', interleaved'), 1 warm-up each; nearest-rank percentiles"
	echo "             memory from /proc/PID/smaps_rollup, MB = 10^6 bytes; USS = private clean + dirty"
	want strata && echo "runtime      strata (release build, built-in launcher); root and state on fresh tmpfs"
	want containerd && echo "runtime      containerd $(containerd --version | awk '{print $3}') + runc $(runc --version | awk 'NR == 1 {print $3}') (runc.v2 shim, overlayfs); root and state on fresh tmpfs"
	echo
	printf '%-12s %-28s %-28s\n' latency "create+start p50 / p90" "stop+remove p50 / p90"
	for r in strata containerd; do
		want "$r" || continue
		cs=$(lat "$r" create+start | tr ' ' /)
		sr=$(lat "$r" stop+remove | tr ' ' /)
		printf '%-12s %-28s %-28s\n' "$r" "${cs:-?} ms" "${sr:-?} ms"
	done
	line=$(sed -n 's/^ratio .* create+start p50: \(.*\)$/\1/p' "$BENCH_OUT")
	[[ -n $line ]] && echo "ratio        strata/containerd create+start p50: $line"
	echo
	echo "memory       (per process: p50 / max over the helpers; per pod: sum of a pod's helpers / pods)"
	for n in 0 ${PODS//,/ }; do
		for r in strata containerd; do
			want "$r" || continue
			{
				sed -n "s/^memory $r pods=$n: daemon \(.*\)/daemon: \1/p" "$BENCH_OUT"
				sed -n "s/^memory $r pods=$n: \([^:]* x[0-9]*\): rss p50 $num MB max $num MB, pss p50 $num MB max $num MB, uss p50 $num MB.*/\1: rss \2\/\3 MB, pss \4\/\5 MB, uss \6 MB/p" "$BENCH_OUT"
				sed -n "s/^memory $r pods=$n: helpers per pod \(.*\)/per pod \1/p" "$BENCH_OUT"
			} | while IFS= read -r line; do
				printf '  %-8s %-11s %s\n' "pods=$n" "$r" "$line"
			done
		done
	done
	sed -n 's/^pods \(.*\)/pods         \1/p' "$BENCH_OUT"
	echo
	if want strata; then
		local p50 rss pss d10
		p50=$(lat strata create+start | cut -d' ' -f1)
		echo "goal         strata create+start p50 <= $GOAL_CREATE_START_MS ms: ${p50:-?} ms: $(verdict "$p50" "$GOAL_CREATE_START_MS")"
		for n in 1 20; do
			rss='' pss=''
			read -r rss pss < <(helper_max strata "$n" 'strata-monitor') || true
			echo "goal         strata monitor <= $GOAL_MONITOR_RSS_MB MB RSS with $n pod(s) (largest monitor): ${rss:-?} MB: $(verdict "$rss" "$GOAL_MONITOR_RSS_MB")"
			echo "goal         strata monitor <= $GOAL_MONITOR_PSS_MB MB PSS with $n pod(s) (largest monitor): ${pss:-?} MB: $(verdict "$pss" "$GOAL_MONITOR_PSS_MB")"
		done
		d10=$(get "^memory strata pods=10: daemon rss $num MB.*")
		echo "goal         strata daemon <= $GOAL_DAEMON_RSS_MB MB RSS with 10 pods: ${d10:-?} MB: $(verdict "$d10" "$GOAL_DAEMON_RSS_MB")"
	fi
	if want containerd; then
		local c p s d
		c=$(lat containerd create+start | cut -d' ' -f1)
		s='' p=''
		read -r s p < <(helper_max containerd 20 containerd-shim-runc-v2) || true
		d=$(get "^memory containerd pods=10: daemon rss $num MB.*")
		echo "reference    containerd: create+start p50 ${c:-?} ms; shim with 20 pods (largest) RSS ${s:-?} MB, PSS ${p:-?} MB; daemon RSS with 10 pods ${d:-?} MB"
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
	run_bench
	summary
}

main
