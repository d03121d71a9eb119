#!/usr/bin/env bash
# tests/bench/pull.sh - image pull benchmark: strata against containerd 1.6 (Debian's, with runc).
#
# A program that prints figures, not a test: it exits non-zero only when something breaks, never
# because a goal is missed. Run as root on this Debian machine; it installs what it needs from Debian
# and downloads nothing from anywhere else. All network traffic stays on 127.0.0.1.
#
#   tests/bench/pull.sh [--only strata|containerd] [--runs N] [--no-build] [--logs DIR] [--tmpfs-size SIZE]
#
#   --only R      benchmark one runtime alone (no ratio); default: both, interleaved
#   --runs N      cold pulls per runtime (default 5)
#   --no-build    use the release binaries already in target/release
#   --logs DIR    copy the daemons' and the registry's logs to DIR at the end
#   --tmpfs-size S  size of each runtime's tmpfs root (default 4G)
#
# What it does, in order:
#   1. installs missing Debian packages, builds strata and strata-conformance (release);
#   2. starts docker-registry on 127.0.0.1:<free port> (storage and access log in a temp dir) and
#      pushes bench/big:1 (~200 MB in 5 gzip layers of this machine's own /usr files, so the content
#      compresses like real images do) and bench/derived:1 (big's first 4 layers + 1 small layer);
#   3. mounts a fresh tmpfs for each runtime's root (this machine's root ext4 has no journal and its
#      inode allocator slows down after many unpack/delete cycles, which would distort unpack speed);
#   4. starts strata and containerd, each with its own root, state and socket;
#   5. `strata-conformance bench pull` (cold pulls, runtimes interleaved, medians and ratio), then
#      the shared-layer check (`bench pull-shared`: what the second, derived pull fetched);
#   6. prints a summary; the EXIT trap stops everything it started and removes every mount and file.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=5
ONLY=both
BUILD=1
LOGS_DIR=
TMPFS_SIZE=4G
LAYERS=5                     # layers of bench/big
LAYER_TARGET=$((40 * 1000 * 1000)) # compressed bytes per layer (~40 MB -> ~200 MB image)
DOWNLOADS=3                  # concurrent layer downloads, the same for both runtimes
GOAL=1.5                     # strata's throughput must be >= GOAL x containerd's

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
log() { printf '[pull.sh] %s\n' "$*" >&2; }
die() { printf '[pull.sh] ERROR: %s\n' "$*" >&2; exit 1; }

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
[[ $(id -u) == 0 ]] || die "run as root (it mounts tmpfs and runs the runtimes)"

want() { [[ $ONLY == both || $ONLY == "$1" ]]; }

# Everything this run creates lives below WORK (the tmpfs roots are mounted inside it), so that
# cleanup is one umount -R per root and one rm -rf.
WORK=$(mktemp -d /tmp/strata-pullbench.XXXXXX)
IMAGES=$WORK/images         # layer blobs, configs and manifests as pushed
REG_DIR=$WORK/registry      # registry storage, config, logs
STRATA_ROOT=$WORK/strata-root
STRATA_STATE=$WORK/strata-state
STRATA_SOCK=$STRATA_STATE/strata.sock
CTD_ROOT=$WORK/containerd-root
CTD_STATE=$WORK/containerd-state
CTD_SOCK=$CTD_STATE/containerd.sock
CTD_CONF_DIR=$WORK/containerd-conf
STRATA_PID='' CTD_PID='' REG_PID='' BENCH_PID='' SAMPLER_PID='' REG=''
SHARED_strata='' SHARED_containerd='' STRATA_BENCH_FETCHED='' PEAK_strata='' PEAK_containerd=''
STRATA_BIN=$REPO/target/release/strata
CONF_BIN=$REPO/target/release/strata-conformance

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on every exit (success, error, Ctrl-C). Stops only the processes this run started,
# by pid, then unmounts and removes WORK.
# ---------------------------------------------------------------------------------------------

# stop_pid NAME PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
	local name=$1 pid=$2 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# Pids of containerd shims serving our containerd: their command line names our socket. A pull
# starts none, but a crashed run or a future container bench could leave some.
our_shims() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $CTD_SOCK " && echo "${p#/proc/}"
	done
	return 0
}

# Mount points at or below WORK, deepest first (containerd may leave overlay mounts under its root).
mounts_below_work() {
	awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

cleanup() {
	local rc=$? m shims
	trap - EXIT INT TERM
	set +e
	((rc == 0)) || log "failed (exit $rc): cleaning up"
	stop_pid strata-conformance "$BENCH_PID"
	stop_pid sampler "$SAMPLER_PID"
	stop_pid strata "$STRATA_PID"
	stop_pid containerd "$CTD_PID"
	mapfile -t shims < <(our_shims)
	if ((${#shims[@]})); then
		log "ending leftover containerd shims: ${shims[*]}"
		kill -KILL "${shims[@]}" 2>/dev/null
	fi
	stop_pid registry "$REG_PID"
	if ((rc != 0)); then
		for f in "$STRATA_STATE/strata.log" "$CTD_STATE/containerd.log"; do
			[[ -s $f ]] || continue
			log "last lines of $f:"
			tail -n 20 "$f" | sed 's/^/    /' >&2
		done
	fi
	if [[ -n $LOGS_DIR ]]; then
		mkdir -p "$LOGS_DIR"
		cp -f "$STRATA_STATE/strata.log" "$CTD_STATE/containerd.log" "$REG_DIR/registry.log" \
			"$REG_DIR/access.log" "$WORK/bench-pull.out" "$WORK/bench-shared-"*.out "$LOGS_DIR/" 2>/dev/null
		log "logs copied to $LOGS_DIR"
	fi
	# umount -R takes a root and everything below it; a lazy unmount is the last resort (a mount
	# still busy is detached and freed when its last user goes).
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
	# The benchmark's own needs, then what building strata-conformance needs (k8s-cri runs protoc).
	for p in docker-registry containerd runc curl jq zstd e2fsprogs gzip tar coreutils \
		build-essential pkg-config protobuf-compiler; do
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
	local args=(build --release -p strata-conformance)
	if want strata; then
		args+=(-p strata)
		# While the daemon is being written, `strata serve` exists only with the `wip` feature
		# (without it src/main.rs is an empty main). Build with it for as long as it exists.
		grep -q '^wip *=' "$REPO/Cargo.toml" && args+=(--features strata/wip)
	fi
	args+=(--bins)
	log "cargo ${args[*]}"
	(cd "$REPO" && cargo "${args[@]}") || die "build failed"
}

# ---------------------------------------------------------------------------------------------
# 2. Registry and images
# ---------------------------------------------------------------------------------------------

# Starts docker-registry on a free loopback port: picks a port nobody listens on, and retries with
# another if the registry still could not bind it (someone took it in between).
start_registry() {
	mkdir -p "$REG_DIR/storage"
	local port
	for _ in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && continue
		# accesslog on: one combined-log line per request (with the bytes sent and the
		# User-Agent) on stdout, so what each runtime fetched can be counted at the source.
		cat >"$REG_DIR/config.yml" <<-EOF
			version: 0.1
			log:
			  level: warn
			  accesslog:
			    disabled: false
			storage:
			  filesystem:
			    rootdirectory: $REG_DIR/storage
			  delete:
			    enabled: true
			http:
			  addr: 127.0.0.1:$port
		EOF
		docker-registry serve "$REG_DIR/config.yml" >>"$REG_DIR/access.log" 2>>"$REG_DIR/registry.log" &
		REG_PID=$!
		local i
		for i in $(seq 50); do
			if curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
				REG=127.0.0.1:$port
				log "registry: docker-registry $(dpkg-query -W -f '${Version}' docker-registry) on $REG (pid $REG_PID, storage $REG_DIR/storage)"
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

# The files for the layers: regular files of /usr/lib, /usr/share and /usr/bin of up to 16 MB (a
# few huge files, such as this machine's JDK modules or LLVM, would make one layer all one file),
# in a fixed pseudo-random order (awk's rand() with a fixed seed), so that every layer mixes
# binaries, libraries and text and compresses about like the others. Names with whitespace are
# left out to keep the lists line-based.
list_usr_files() {
	find /usr/lib /usr/share /usr/bin -xdev -type f -size +0 -size -16M -printf '%s %p\n' 2>/dev/null |
		sort -k2 | awk 'BEGIN { srand(20240101) } NF == 2 { printf "%.12f %s\n", rand(), $0 }' |
		sort -n | cut -d' ' -f2-
}

# make_layer LIST OUT: a gzip layer of the files named in LIST (plus their parent directories,
# as real images have), OUT.tar.gz, with OUT.diffid (sha256 of the uncompressed tar).
make_layer() {
	local list=$1 out=$2
	# Parent directories first (sorted, unique), then the files: a tar as a real build makes it.
	awk '{ n = split($0, p, "/"); d = ""; for (i = 2; i < n; i++) { d = d "/" p[i]; print substr(d, 2) } }' "$list" |
		sort -u >"$out.entries"
	sed 's|^/||' "$list" | sort >>"$out.entries"
	# --ignore-failed-read: files can vanish while other engineers install packages; the digests
	# are of the tar actually written, so the image stays consistent.
	tar -C / --no-recursion --no-unquote --verbatim-files-from --ignore-failed-read --numeric-owner \
		-cf "$out.tar" -T "$out.entries" 2>/dev/null || true
	sha256_of "$out.tar" >"$out.diffid"
	gzip -n -6 -c "$out.tar" >"$out.tar.gz"
	rm -f "$out.tar" "$out.entries"
}

# push_blob REPO FILE [FROM_REPO]: uploads FILE as a blob of REPO, monolithically (POST an upload,
# PUT the whole blob to its location with ?digest=). With FROM_REPO, first asks the registry to
# mount the blob from there (cross-repository mount, as `docker push` does for shared layers).
push_blob() {
	local repo=$1 file=$2 from=${3:-} digest loc code
	digest=sha256:$(sha256_of "$file")
	if curl -sf -o /dev/null -I "http://$REG/v2/$repo/blobs/$digest"; then return 0; fi
	if [[ -n $from ]]; then
		code=$(curl -s -o /dev/null -w '%{http_code}' -X POST \
			"http://$REG/v2/$repo/blobs/uploads/?mount=$digest&from=$from")
		[[ $code == 201 ]] && return 0
	fi
	loc=$(curl -sf -o /dev/null -D - -X POST "http://$REG/v2/$repo/blobs/uploads/" |
		tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
	[[ -n $loc ]] || die "registry gave no upload location for $repo"
	[[ $loc == /* ]] && loc=http://$REG$loc
	[[ $loc == *\?* ]] && loc+="&digest=$digest" || loc+="?digest=$digest"
	# -T streams the file; an empty Expect header saves curl's 1 s wait for "100 Continue".
	curl -sf -o /dev/null -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' \
		-T "$file" "$loc" || die "upload of $file to $repo failed"
}

# push_image REPO TAG NAME FROM_REPO LAYER...: writes NAME.config.json and NAME.manifest.json
# for the layers (each LAYER is a path prefix with .tar.gz and .diffid) and pushes them.
push_image() {
	local repo=$1 tag=$2 name=$3 from=$4
	shift 4
	local l diff_ids=() layer_json=() config manifest
	for l in "$@"; do
		push_blob "$repo" "$l.tar.gz" "$from"
		diff_ids+=("sha256:$(cat "$l.diffid")")
		layer_json+=("$(jq -nc --arg d "sha256:$(sha256_of "$l.tar.gz")" --argjson s "$(size_of "$l.tar.gz")" \
			'{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $s}')")
	done
	config=$IMAGES/$name.config.json
	printf '%s\n' "${diff_ids[@]}" | jq -Rsc --arg name "$repo:$tag" '{
		created: "2024-01-01T00:00:00Z",
		architecture: "amd64",
		os: "linux",
		config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
			Cmd: ["/usr/bin/bash"], Labels: {"org.opencontainers.image.title": $name}},
		rootfs: {type: "layers", diff_ids: (split("\n") | map(select(length > 0)))},
		history: [split("\n")[] | select(length > 0) | {created: "2024-01-01T00:00:00Z", created_by: "tests/bench/pull.sh"}]
	}' >"$config"
	push_blob "$repo" "$config"
	manifest=$IMAGES/$name.manifest.json
	printf '%s\n' "${layer_json[@]}" | jq -sc --arg cd "sha256:$(sha256_of "$config")" \
		--argjson cs "$(size_of "$config")" '{
		schemaVersion: 2,
		mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
		layers: .
	}' >"$manifest"
	curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
		--data-binary @"$manifest" "http://$REG/v2/$repo/manifests/$tag" ||
		die "manifest PUT for $repo:$tag failed"
}

# Builds and pushes bench/big:1 and bench/derived:1; sets BIG_BYTES (compressed layers + config),
# BIG_UNPACKED, NEW_LAYER_BYTES, and the digests of derived's new layer and config.
build_images() {
	mkdir -p "$IMAGES"
	local all=$IMAGES/usr-files i used=0 files=0 gz=0 budget n
	list_usr_files >"$all"
	# Layer i takes the next files of the list up to a budget of file bytes: LAYER_TARGET times
	# the gzip ratio seen so far (3x, the usual, before the first layer), so each layer comes
	# out near LAYER_TARGET compressed whatever this machine's /usr holds.
	log "building bench/big:1: $LAYERS layers of ~$((LAYER_TARGET / 1000000)) MB gzip of /usr files each"
	for i in $(seq "$LAYERS"); do
		budget=$(awk -v f="$files" -v g="$gz" -v t="$LAYER_TARGET" \
			'BEGIN { printf "%d", t * (g > 0 ? f / g : 3) }')
		awk -v from="$used" -v b="$budget" \
			'NR > from { if (s + $1 > b && s > 0) exit; s += $1; print $2 }' "$all" >"$IMAGES/layer$i.list"
		n=$(wc -l <"$IMAGES/layer$i.list")
		((n > 0)) || die "not enough files in /usr for $LAYERS layers"
		files=$((files + $(awk -v from="$used" -v n="$n" 'NR > from && NR <= from + n { s += $1 } END { printf "%d", s }' "$all")))
		used=$((used + n))
		make_layer "$IMAGES/layer$i.list" "$IMAGES/layer$i"
		gz=$((gz + $(size_of "$IMAGES/layer$i.tar.gz")))
		log "  layer $i: $(size_of "$IMAGES/layer$i.tar.gz") bytes gzip, $n files"
	done
	# derived's own layer: a few MB of files not in big (from /usr/include and /etc), small
	# against the shared base.
	find /usr/include /etc -xdev -type f -size +0 -printf '%p\n' 2>/dev/null | sort | awk 'NF == 1 && n++ < 400' >"$IMAGES/new.list"
	make_layer "$IMAGES/new.list" "$IMAGES/new"
	NEW_LAYER_BYTES=$(size_of "$IMAGES/new.tar.gz")

	local big=() derived=()
	for i in $(seq "$LAYERS"); do big+=("$IMAGES/layer$i"); done
	derived=("${big[@]:0:LAYERS-1}" "$IMAGES/new")
	push_image bench/big 1 big "" "${big[@]}"
	push_image bench/derived 1 derived bench/big "${derived[@]}"
	DERIVED_CONFIG_DIGEST=sha256:$(sha256_of "$IMAGES/derived.config.json")
	BIG_BYTES=$(jq '[.config.size, .layers[].size] | add' "$IMAGES/big.manifest.json")
	BIG_UNPACKED=0
	for i in $(seq "$LAYERS"); do
		BIG_UNPACKED=$((BIG_UNPACKED + $(gzip -l "$IMAGES/layer$i.tar.gz" | awk 'NR == 2 {print $2}')))
	done
	log "pushed $REG/bench/big:1 ($BIG_BYTES bytes compressed, $BIG_UNPACKED bytes of tar) and $REG/bench/derived:1 (new layer $NEW_LAYER_BYTES bytes)"
	# The blobs are in the registry now; keep only the manifests and configs.
	rm -f "$IMAGES"/*.tar.gz "$IMAGES"/*.list "$all"
}

# ---------------------------------------------------------------------------------------------
# Registry access log: bytes of blob GETs, counted from the combined-log lines the registry wrote
# (request line, status, bytes sent, User-Agent).
# ---------------------------------------------------------------------------------------------
access_lines() { wc -l <"$REG_DIR/access.log"; }

# blob_gets FROM_LINE REPO: "BYTES LAYERS CONFIGS" summed over successful blob GETs of REPO after
# line FROM_LINE of the access log; CONFIG_DIGEST (if set) is counted as config, not as a layer.
blob_gets() {
	local from=$1 repo=$2 config=${3:-}
	tail -n +"$((from + 1))" "$REG_DIR/access.log" | awk -F'"' -v repo="$repo" -v config="$config" '
		{ split($2, req, " "); split($3, st, " ")
		  if (req[1] != "GET" || index(req[2], "/v2/" repo "/blobs/") != 1 || st[1] !~ /^20[06]$/) next
		  bytes += st[2]; if (config != "" && index(req[2], config) > 0) configs++; else layers++ }
		END { printf "%d %d %d\n", bytes, layers, configs }'
}

# bytes_by_agent FROM_LINE REPO: lines "BYTES GETS USER-AGENT" of blob GETs of REPO, per client.
bytes_by_agent() {
	local from=$1 repo=$2
	tail -n +"$((from + 1))" "$REG_DIR/access.log" | awk -F'"' -v repo="$repo" '
		{ split($2, req, " "); split($3, st, " ")
		  if (req[1] != "GET" || index(req[2], "/v2/" repo "/blobs/") != 1 || st[1] !~ /^20[06]$/) next
		  b[$6] += st[2]; n[$6]++ }
		END { for (a in b) printf "%d %d %s\n", b[a], n[a], a }'
}

# ---------------------------------------------------------------------------------------------
# 3-5. tmpfs roots and the runtimes
# ---------------------------------------------------------------------------------------------

# mount_root DIR: a fresh tmpfs at DIR, for one runtime's root.
mount_root() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0711" "pullbench-$(basename "$1")" "$1"
}

# wait_cri NAME SOCK PID LOG: until the runtime answers Version and Status on SOCK.
wait_cri() {
	local name=$1 sock=$2 pid=$3 logf=$4 i
	for i in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || die "$name exited at start-up, see above"
		if [[ -S $sock ]] && "$CONF_BIN" --endpoint "unix://$sock" bench status-counters >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	tail -n 20 "$logf" >&2
	die "$name did not answer on $sock within 30 s"
}

start_strata() {
	mount_root "$STRATA_ROOT"
	mkdir -p "$STRATA_STATE"
	# Loopback registries are plain HTTP for strata without configuration.
	cat >"$STRATA_STATE/config.toml" <<-EOF
		root = "$STRATA_ROOT"
		state = "$STRATA_STATE"
		socket = "$STRATA_SOCK"

		[log]
		level = "info"

		[images]
		max_concurrent_downloads = $DOWNLOADS
	EOF
	"$STRATA_BIN" serve --config "$STRATA_STATE/config.toml" >"$STRATA_STATE/strata.log" 2>&1 </dev/null &
	STRATA_PID=$!
	wait_cri strata "$STRATA_SOCK" "$STRATA_PID" "$STRATA_STATE/strata.log"
	log "strata: pid $STRATA_PID, root $STRATA_ROOT (fresh tmpfs, $TMPFS_SIZE), state $STRATA_STATE, max_concurrent_downloads $DOWNLOADS"
}

# containerd 1.6 as in /work/shared/harness/containerd.sh, but entirely private to this run: own
# root (on its tmpfs), state, socket, config and registry hosts. No CNI config: the CRI plugin
# logs that it cannot load one, which does not matter for pulls.
start_containerd() {
	mount_root "$CTD_ROOT"
	mkdir -p "$CTD_STATE" "$CTD_CONF_DIR/certs.d/$REG" "$WORK/cni/bin" "$WORK/cni/net.d"
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
		    sandbox_image = "$REG/pause:unused"
		    stream_server_address = "127.0.0.1"
		    stream_server_port = "0"
		    enable_selinux = false
		    # This machine withholds CAP_SYS_RESOURCE even from root.
		    restrict_oom_score_adj = true
		    max_concurrent_downloads = $DOWNLOADS
		    [plugins."io.containerd.grpc.v1.cri".containerd]
		      snapshotter = "overlayfs"
		      default_runtime_name = "runc"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		        runtime_type = "io.containerd.runc.v2"
		        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		          BinaryName = "/usr/sbin/runc"
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
	containerd --config "$CTD_CONF_DIR/config.toml" >"$CTD_STATE/containerd.log" 2>&1 </dev/null &
	CTD_PID=$!
	wait_cri containerd "$CTD_SOCK" "$CTD_PID" "$CTD_STATE/containerd.log"
	log "containerd: $(containerd --version | awk '{print $3}'), pid $CTD_PID, root $CTD_ROOT (fresh tmpfs, $TMPFS_SIZE, overlayfs snapshotter), state $CTD_STATE, max_concurrent_downloads $DOWNLOADS"
}

# mb_used DIR: MB (10^6) used on the filesystem of DIR.
mb_used() { df -B1 --output=used "$1" | awk 'NR == 2 { printf "%d", $1 / 1e6 }'; }

# sample_peak DIR OUT: until killed, keeps in OUT the highest usage of DIR's filesystem seen
# (sampled every 0.1 s).
sample_peak() {
	local dir=$1 out=$2 peak=0 now
	while :; do
		now=$(mb_used "$dir")
		((now > peak)) && { peak=$now; echo "$peak" >"$out"; }
		sleep 0.1
	done
}

# strata's cumulative pull counters: "BYTES LAYERS" (from Status verbose info).
strata_counters() {
	"$CONF_BIN" --endpoint "unix://$STRATA_SOCK" bench status-counters |
		jq -r '"\(.info.pulls.bytesFetched // 0) \(.info.pulls.layersFetched // 0)"'
}

# ---------------------------------------------------------------------------------------------
# 6. Measurements
# ---------------------------------------------------------------------------------------------

# bench_cmd OUT ARGS...: strata-conformance ARGS, its stdout saved to OUT and shown after. It runs
# in the background with the script waiting for it, because bash runs a trap only once the
# foreground command is done: this way a TERM/INT to the script cleans up at once (cleanup ends
# the child too), not after a bench of minutes.
bench_cmd() {
	local out=$1 rc=0
	shift
	"$CONF_BIN" "$@" >"$out" &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=''
	cat "$out"
	((rc == 0)) || die "strata-conformance $* failed (exit $rc)"
}

# `--endpoint A bench [--compare-endpoint B]` (--compare-endpoint is an option of `bench`), in
# bench order: strata first, so the printed ratio is strata/containerd.
bench_on() {
	case $ONLY in
	both) echo "--endpoint unix://$STRATA_SOCK bench --compare-endpoint unix://$CTD_SOCK" ;;
	strata) echo "--endpoint unix://$STRATA_SOCK bench" ;;
	containerd) echo "--endpoint unix://$CTD_SOCK bench" ;;
	esac
}

run_pull_bench() {
	local from c0=() c1=()
	from=$(access_lines)
	want strata && read -ra c0 < <(strata_counters)
	log "bench pull: $RUNS cold pulls of $REG/bench/big:1 per runtime$([[ $ONLY == both ]] && echo ', interleaved')"
	# shellcheck disable=SC2046 # bench_on is meant to split
	bench_cmd "$WORK/bench-pull.out" $(bench_on) pull --image "$REG/bench/big:1" --runs "$RUNS"
	# Were the pulls cold? Each should have fetched the whole image from the registry.
	log "registry served for bench/big (expect ~$RUNS x $BIG_BYTES bytes per runtime):"
	bytes_by_agent "$from" bench/big | while read -r b n agent; do
		log "  $agent: $b bytes in $n blob GETs ($(awk -v b="$b" -v t="$BIG_BYTES" 'BEGIN { printf "%.2f", b / t }') images)"
	done
	# The bench removed the image after its last pull: what the roots still hold is left over.
	want strata && log "  after RemoveImage, strata's root still holds $(mb_used "$STRATA_ROOT") MB"
	want containerd && log "  after RemoveImage, containerd's root still holds $(mb_used "$CTD_ROOT") MB"
	if want strata; then
		read -ra c1 < <(strata_counters)
		STRATA_BENCH_FETCHED=$((c1[0] - c0[0]))
		log "  strata's own counters: $STRATA_BENCH_FETCHED bytes in $((c1[1] - c0[1])) layers"
	fi
}

# The shared-layer check, one runtime at a time so the registry's log tells them apart:
# `bench pull-shared` cold-pulls bench/big, then bench/derived (4 of whose 5 layers are big's).
# Sets SHARED_<runtime> to the sentence for the summary.
run_shared_check() {
	local name=$1 sock=$2 root=$3 from out bytes layers configs peak
	out=$WORK/bench-shared-$name.out
	from=$(access_lines)
	# Untimed here, so its small cost does not matter: the root's peak usage while both images
	# are present shows that the layers really were unpacked (and what an image costs on disk).
	sample_peak "$root" "$WORK/peak-$name" &
	SAMPLER_PID=$!
	bench_cmd "$out" --endpoint "unix://$sock" bench pull-shared --base "$REG/bench/big:1" \
		--derived "$REG/bench/derived:1" --runs 1
	stop_pid sampler "$SAMPLER_PID"
	SAMPLER_PID=''
	peak=$(cat "$WORK/peak-$name" 2>/dev/null || echo '?')
	log "$name: peak root usage with bench/big + bench/derived pulled: $peak MB (big is $((BIG_UNPACKED / 1000000)) MB as tar, $((BIG_BYTES / 1000000)) MB compressed)"
	printf -v "PEAK_$name" '%s' "$peak"
	read -r bytes layers configs < <(blob_gets "$from" bench/derived "$DERIVED_CONFIG_DIGEST")
	local at_registry="registry served $bytes bytes of bench/derived blobs: $layers layers + $configs config"
	local own
	own=$(sed -n 's/.*: fetched \([0-9]*\) bytes in \([0-9]*\) layers (runtime.*/\1 \2/p' "$out")
	if [[ -n $own ]]; then
		read -r bytes layers <<<"$own"
		printf -v "SHARED_$name" '%s' "second pull (shared base layers) fetched $bytes bytes in $layers layers (new layer is $NEW_LAYER_BYTES bytes) by strata's counters; $at_registry"
	else
		# containerd 1.6 has no fetched-bytes metric: count at the registry.
		printf -v "SHARED_$name" '%s' "second pull (shared base layers) fetched $bytes bytes in $layers layers (new layer is $NEW_LAYER_BYTES bytes), measured at the registry (incl. $configs config blob)"
	fi
	local var=SHARED_$name
	log "$name: ${!var}"
}

# ---------------------------------------------------------------------------------------------
# 7. Summary
# ---------------------------------------------------------------------------------------------

# field LABEL: "SECONDS MBPS" from the bench pull output line of runtime LABEL.
field() {
	sed -n "s|^pull $REG/bench/big:1 $1: median \([0-9.]*\) s, \([0-9.]*\) MB/s.*|\1 \2|p" "$WORK/bench-pull.out"
}

summary() {
	local s c ratio met
	echo
	echo "==================== image pull benchmark: summary ===================="
	echo "image        $REG/bench/big:1: $LAYERS gzip layers, $BIG_BYTES bytes compressed, $BIG_UNPACKED bytes uncompressed"
	echo "method       $RUNS cold pulls per runtime$([[ $ONLY == both ]] && echo ', interleaved'), median; each runtime's root on a fresh tmpfs ($TMPFS_SIZE), $DOWNLOADS concurrent downloads each"
	echo "registry     docker-registry $(dpkg-query -W -f '${Version}' docker-registry) on $REG (plain HTTP, storage on $(df --output=fstype "$REG_DIR" | tail -1))"
	if want strata; then
		read -r s c < <(field strata)
		echo "strata       median ${s:-?} s, ${c:-?} MB/s   (root: tmpfs at $STRATA_ROOT)"
	fi
	if want containerd; then
		read -r s c < <(field containerd)
		echo "containerd   median ${s:-?} s, ${c:-?} MB/s   ($(containerd --version | awk '{print $3}'), overlayfs; root: tmpfs at $CTD_ROOT)"
	fi
	if [[ $ONLY == both ]]; then
		ratio=$(sed -n 's/^ratio .* throughput: \([0-9.]*\)x$/\1/p' "$WORK/bench-pull.out")
		met=$(awk -v r="${ratio:-0}" -v g="$GOAL" 'BEGIN { print (r >= g) ? "MET" : "NOT MET" }')
		echo "ratio        strata/containerd throughput: ${ratio:-?}x"
		echo "goal         strata >= ${GOAL}x containerd's throughput: $met"
	else
		echo "ratio        not measured (--only $ONLY)"
	fi
	want strata && echo "shared       strata: $SHARED_strata"
	want containerd && echo "shared       containerd: $SHARED_containerd"
	want strata && echo "disk         strata: peak root usage $PEAK_strata MB with bench/big + bench/derived pulled"
	want containerd && echo "disk         containerd: peak root usage $PEAK_containerd MB with bench/big + bench/derived pulled (keeps compressed blobs too)"
	echo "========================================================================"
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
	run_pull_bench
	if want strata; then run_shared_check strata "$STRATA_SOCK" "$STRATA_ROOT"; fi
	if want containerd; then run_shared_check containerd "$CTD_SOCK" "$CTD_ROOT"; fi
	summary
}

main
