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

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
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

want() { [[ $ONLY == both || $ONLY == "$1" ]]; }

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

# stop_pid NAME PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
	local name=$1 pid=$2
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# Pids of strata's helpers of this run (the daemon's environment marker is inherited).
marked_pids() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF -- "$MARKER" && echo "${p#/proc/}"
	done
	return 0
}

# Pids of containerd shims serving our containerd: their command line names our socket.
our_shims() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $CTD_SOCK " && echo "${p#/proc/}"
	done
	return 0
}

# Our cgroup directories in every hierarchy, deepest first.
our_cgroups() {
	local h
	for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
		[[ -d $h$CG_PARENT ]] && find "$h$CG_PARENT" -depth -type d
	done
	return 0
}

# Kills every process in our cgroups (containers, pause) and removes the cgroups.
remove_cgroups() {
	local d left
	for _ in $(seq 50); do
		left=0
		while read -r d; do
			[[ -n $d ]] || continue
			if [[ -s $d/cgroup.procs ]]; then
				xargs -r kill -KILL <"$d/cgroup.procs" 2>/dev/null
				left=1
			fi
			rmdir "$d" 2>/dev/null || left=1
		done < <(our_cgroups)
		((left)) || return 0
		sleep 0.1
	done
	log "cgroups left:"
	our_cgroups >&2
}

# Mount points at or below WORK, deepest first.
mounts_below_work() {
	awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

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

# Starts docker-registry on a free loopback port (retrying with another port if someone took it).
start_registry() {
	mkdir -p "$REG_DIR/storage"
	local port
	for _ in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && continue
		cat >"$REG_DIR/config.yml" <<-EOF
			version: 0.1
			log:
			  level: warn
			  accesslog:
			    disabled: true
			storage:
			  filesystem:
			    rootdirectory: $REG_DIR/storage
			http:
			  addr: 127.0.0.1:$port
		EOF
		docker-registry serve "$REG_DIR/config.yml" >>"$REG_DIR/registry.log" 2>&1 </dev/null &
		REG_PID=$!
		for _ in $(seq 50); do
			if curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
				REG=127.0.0.1:$port
				log "registry: docker-registry $(dpkg-query -W -f '${Version}' docker-registry) on $REG (pid $REG_PID)"
				return 0
			fi
			kill -0 "$REG_PID" 2>/dev/null || break
			sleep 0.1
		done
		stop_pid registry "$REG_PID"
		REG_PID=
	done
	die "docker-registry did not start, see $REG_DIR/registry.log"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# push_blob REPO FILE: uploads FILE as a blob of REPO, monolithically (POST, then PUT ?digest=).
push_blob() {
	local repo=$1 file=$2 digest loc
	digest=sha256:$(sha256_of "$file")
	if curl -sf -o /dev/null -I "http://$REG/v2/$repo/blobs/$digest"; then return 0; fi
	loc=$(curl -sf -o /dev/null -D - -X POST "http://$REG/v2/$repo/blobs/uploads/" |
		tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
	[[ -n $loc ]] || die "registry gave no upload location for $repo"
	[[ $loc == /* ]] && loc=http://$REG$loc
	[[ $loc == *\?* ]] && loc+="&digest=$digest" || loc+="?digest=$digest"
	curl -sf -o /dev/null -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' \
		-T "$file" "$loc" || die "upload of $file to $repo failed"
}

# make_layer ROOTFS OUT: a reproducible gzip layer of the directory ROOTFS (sorted, fixed mtime,
# numeric owners), OUT.tar.gz, with OUT.diffid (sha256 of the uncompressed tar).
make_layer() {
	local rootfs=$1 out=$2
	tar --format=gnu --sort=name --mtime=@1577836800 --numeric-owner --owner=0 --group=0 \
		-C "$rootfs" -cf "$out.tar" .
	sha256_of "$out.tar" >"$out.diffid"
	gzip -n -6 -c "$out.tar" >"$out.tar.gz"
	rm -f "$out.tar"
}

# push_image REPO TAG LAYER CONFIG_JSON: a one-layer OCI image whose config's `config` is
# CONFIG_JSON (plus PATH), pushed as REPO:TAG. Prints the layer's compressed size.
push_image() {
	local repo=$1 tag=$2 layer=$3 cfg=$4 config manifest
	push_blob "$repo" "$layer.tar.gz"
	config=$IMAGES/$(basename "$layer").config.json
	jq -nc --argjson c "$cfg" --arg diffid "sha256:$(cat "$layer.diffid")" '{
		created: "2020-01-01T00:00:00Z", architecture: "amd64", os: "linux",
		config: ({Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]} + $c),
		rootfs: {type: "layers", diff_ids: [$diffid]},
		history: [{created: "2020-01-01T00:00:00Z", created_by: "tests/bench/containers.sh"}]
	}' >"$config"
	push_blob "$repo" "$config"
	manifest=$IMAGES/$(basename "$layer").manifest.json
	jq -nc --arg cd "sha256:$(sha256_of "$config")" --argjson cs "$(size_of "$config")" \
		--arg ld "sha256:$(sha256_of "$layer.tar.gz")" --argjson ls "$(size_of "$layer.tar.gz")" '{
		schemaVersion: 2,
		mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
		layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
	}' >"$manifest"
	curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
		--data-binary @"$manifest" "http://$REG/v2/$repo/manifests/$tag" ||
		die "manifest PUT for $repo:$tag failed"
	size_of "$layer.tar.gz"
}

# The busybox root filesystem, as tests/support/rootfs.rs builds it: Debian's (dynamically
# linked) /bin/busybox with every applet hard-linked, the libraries ldd lists at their paths,
# /etc/passwd and /etc/group, /tmp 1777, empty /proc /sys /dev /root.
build_busybox_rootfs() {
	local r=$1 a lib
	mkdir -p "$r"/{bin,etc,proc,sys,dev,var,usr/bin,root,tmp}
	chmod 700 "$r/root"
	chmod 1777 "$r/tmp"
	install -m 0755 /bin/busybox "$r/bin/busybox"
	for a in $(/bin/busybox --list); do
		[[ $a == busybox || -e $r/bin/$a ]] || ln "$r/bin/busybox" "$r/bin/$a"
	done
	for lib in $(ldd /bin/busybox | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		install -D -m 0755 "$(readlink -f "$lib")" "$r$lib"
	done
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'www-data:x:33:33:www-data:/var/www:/bin/false' \
		'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$r/etc/passwd"
	printf '%s\n' 'root:x:0:' 'www-data:x:33:' 'nogroup:x:65534:' 'nobody:x:65534:' >"$r/etc/group"
	chroot "$r" /bin/sleep 0 || die "busybox rootfs self-check failed"
}

# The sandbox image's one file: a static binary that sleeps until SIGTERM or SIGINT and reaps
# its children (what the pause container does).
build_pause_rootfs() {
	local r=$1
	mkdir -p "$r"
	cat >"$IMAGES/pause.c" <<-'EOF'
		#include <signal.h>
		#include <sys/wait.h>
		#include <unistd.h>
		static void quit(int sig) { (void)sig; _exit(0); }
		static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
		int main(void) {
		  struct sigaction q = {.sa_handler = quit}, c = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
		  sigaction(SIGTERM, &q, 0);
		  sigaction(SIGINT, &q, 0);
		  sigaction(SIGCHLD, &c, 0);
		  for (;;) pause();
		}
	EOF
	gcc -static -O2 -Wall -Werror -o "$r/pause" "$IMAGES/pause.c" || die "building pause failed"
	strip "$r/pause"
}

build_images() {
	mkdir -p "$IMAGES/rootfs"
	build_busybox_rootfs "$IMAGES/rootfs/busybox"
	make_layer "$IMAGES/rootfs/busybox" "$IMAGES/busybox"
	BUSYBOX_BYTES=$(push_image bench/busybox 1 "$IMAGES/busybox" '{"Cmd": ["sh"]}')
	BUSYBOX_IMAGE=$REG/bench/busybox:1
	build_pause_rootfs "$IMAGES/rootfs/pause"
	make_layer "$IMAGES/rootfs/pause" "$IMAGES/pause"
	push_image bench/pause 1 "$IMAGES/pause" '{"Entrypoint": ["/pause"], "User": "65535:65535"}' >/dev/null
	PAUSE_IMAGE=$REG/bench/pause:1
	log "pushed $BUSYBOX_IMAGE (busybox $(dpkg-query -W -f '${Version}' busybox), layer $BUSYBOX_BYTES bytes gzip) and $PAUSE_IMAGE"
	rm -rf "$IMAGES/rootfs"
}

# ---------------------------------------------------------------------------------------------
# 3-4. tmpfs roots and the runtimes
# ---------------------------------------------------------------------------------------------

# mount_tmpfs DIR: a fresh tmpfs at DIR.
mount_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0711" "ctrbench-$(basename "$1")" "$1"
}

# wait_cri NAME SOCK PID LOG: until the runtime answers Version and Status on SOCK.
wait_cri() {
	local name=$1 sock=$2 pid=$3 logf=$4
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logf" >&2; die "$name exited at start-up"; }
		if [[ -S $sock ]] && "$CONF_BIN" --endpoint "unix://$sock" bench status-counters >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	tail -n 20 "$logf" >&2
	die "$name did not answer on $sock within 30 s"
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

# `--endpoint A bench [--compare-endpoint B]`, strata first (ratios are strata/containerd).
bench_on() {
	case $ONLY in
	both) echo "--endpoint unix://$STRATA_SOCK bench --compare-endpoint unix://$CTD_SOCK" ;;
	strata) echo "--endpoint unix://$STRATA_SOCK bench" ;;
	containerd) echo "--endpoint unix://$CTD_SOCK bench" ;;
	esac
}

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
