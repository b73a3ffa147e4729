#!/usr/bin/env bash
# A Debian bookworm base image made on this machine, for where Debian's mirror
# is reachable but no container registry is: debootstrap, then podman import.
# Does nothing when the image exists. Usage: bootstrap-base.sh [IMAGE]
set -euo pipefail
image=${1:-localhost/bookworm-min:latest}
podman image exists "$image" && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "making $image needs root (debootstrap)" >&2
    exit 1
fi
rootfs=$(mktemp -d /var/tmp/bookworm-XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "bootstrapping $image (about 2 minutes)" >&2
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "made $image" >&2
