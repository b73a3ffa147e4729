#!/usr/bin/env bash
# A Debian bookworm base image made on this machine, for where Debian's mirror
# is reachable but no container registry is: debootstrap, then podman import.
# Does nothing when the image exists. Usage: bootstrap-base.sh [IMAGE]
set -euo pipefail
image=${1:-localhost/bookworm-slim:latest}
podman image exists "$image" && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "making $image needs root (debootstrap)" >&2
    exit 1
fi
rootfs=$(mktemp -d /var/tmp/bookworm-XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "bootstrapping $image (about 2 minutes)" >&2
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
# As Debian's own slim images: apt keeps no caches, dpkg installs no docs,
# man pages or translations.
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "made $image" >&2
