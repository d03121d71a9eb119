#!/usr/bin/env bash
# Installs the Debian packages strata's daemon and its tests need (idempotent; root).
set -euo pipefail
packages=(
	# the daemon: nothing beyond the kernel; these serve the build and the tests
	build-essential pkg-config
	protobuf-compiler # the conformance client's k8s-cri bindings run protoc
	docker-registry   # a real OCI registry on loopback for the tests
	apache2-utils     # htpasswd for the authenticated-registry tests
	busybox           # fixture images are built from Debian's dynamic busybox
	runc              # the external OCI runtime handler's tests (containers_oci_runtime.rs)
	containernetworking-plugins iptables # pod networking (/usr/lib/cni: bridge, host-local, portmap, loopback)
	openssl # the streaming TLS test makes its own CA and server certificate
	zstd tar gzip util-linux iproute2 e2fsprogs
)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
	# Keep package scripts from starting the stock registry service.
	made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	((made_policy)) && rm -f /usr/sbin/policy-rc.d
fi
# The stock docker-registry service may have been started by the package; tests run their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
exit 0
