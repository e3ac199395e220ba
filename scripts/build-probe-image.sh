#!/usr/bin/env bash
# Builds the Docker image `rkube-probe:bookworm` that scripts/probe-platform.sh
# runs in (privileged) to check what a node container can do. No registry is
# reachable, so the image is a debootstrap'd Debian rootfs turned into an
# image with `docker import`. Cached: rebuilt only when the package list
# below changes (its hash is the image's label).
set -euo pipefail

IMAGE="${RKUBE_PROBE_IMAGE:-rkube-probe:bookworm}"
CACHE="${RKUBE_CACHE:-/var/cache/rkube}/probe"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="runc,iproute2,iptables,containernetworking-plugins,busybox-static,procps,util-linux"

key="$(printf '%s %s' "$PACKAGES" bookworm | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{index .Config.Labels "rkube.inputs"}}' "$IMAGE" 2>/dev/null)" = "$key" ]; then
  echo "$IMAGE is up to date ($key)"
  exit 0
fi

mkdir -p "$CACHE"
rootfs="$CACHE/rootfs-$key"
if [ ! -x "$rootfs/usr/sbin/runc" ]; then
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR"
  chroot "$rootfs" apt-get clean
fi
tar -C "$rootfs" -c . | docker import \
  --change "LABEL rkube.inputs=$key" \
  --change 'CMD ["/bin/bash"]' - "$IMAGE"
echo "built $IMAGE ($key)"
