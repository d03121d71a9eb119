# tests/bench/common.sh - functions shared by containers.sh, pods.sh and streaming.sh (sourced,
# not run). They use the sourcing script's settings: WORK, REG_DIR, IMAGES, CG_PARENT, MARKER,
# ONLY, the binaries' paths and so on, which each script defines before it calls them.

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

want() { [[ $ONLY == both || $ONLY == "$1" ]]; }

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

# `--endpoint A bench [--compare-endpoint B]`, strata first (ratios are strata/containerd).
bench_on() {
	case $ONLY in
	both) echo "--endpoint unix://$STRATA_SOCK bench --compare-endpoint unix://$CTD_SOCK" ;;
	strata) echo "--endpoint unix://$STRATA_SOCK bench" ;;
	containerd) echo "--endpoint unix://$CTD_SOCK bench" ;;
	esac
}
