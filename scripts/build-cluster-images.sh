#!/usr/bin/env bash
# Builds the Docker images of the compose cluster (docker-compose.yml)
# without any registry:
#
#   rkube-base:<key>  Debian bookworm from `debootstrap --variant=minbase`
#                     with the node's packages, turned into an image with
#                     `docker import`; rebuilt only when the package list
#                     below changes (<key> is its hash, also the label
#                     rkube.inputs).
#   rkube:latest      (RKUBE_IMAGE) the base + the project's binaries
#                     (stripped) + the pod image archives of
#                     scripts/build-images.sh (busybox, nginx, echo), which
#                     each node's runtime shim loads with --preload; built
#                     with `docker build` from images/cluster/, skipped when
#                     its inputs are unchanged (label rkube.context).
#
#   scripts/build-cluster-images.sh [--profile debug|release]
#
# --profile (default release; RKUBE_PROFILE): which cargo profile's binaries
# go in. The tests use debug, which scripts/test.sh has already built, so
# the test cluster costs no compile. RKUBE_BIN_DIR names a directory holding
# already built binaries instead (nothing is compiled then).
#
# Cache: $RKUBE_CACHE (default /var/cache/rkube)/cluster: the debootstrap'd
# rootfs, the pod image archives (pod-images/) and the docker build context.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
PROFILE="${RKUBE_PROFILE:-release}"
IMAGE="${RKUBE_IMAGE:-rkube:latest}"
CACHE="${RKUBE_CACHE:-/var/cache/rkube}/cluster"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "build-cluster-images: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in
  debug|release) ;;
  *) echo "build-cluster-images: --profile is debug or release, not $PROFILE" >&2; exit 2 ;;
esac

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "build-cluster-images: $1 is missing ($2)" >&2; exit 1; }
}
need docker "install Docker Engine"
need debootstrap "apt-get install debootstrap"
docker info >/dev/null 2>&1 || { echo "build-cluster-images: the Docker daemon does not answer (is it running? are you root?)" >&2; exit 1; }

mkdir -p "$CACHE"
# One build at a time per cache (tests may ask concurrently).
exec 9>"$CACHE/.lock"
flock 9

# --- the base image --------------------------------------------------------
# What a node needs: runc and the CNI plugins (the runtime shim), iproute2 and
# iptables (CNI, routes, kube-proxy's service addresses), busybox (wget for
# health checks and tests), util-linux (mount, mountpoint, nsenter), procps.
PACKAGES="runc,containernetworking-plugins,iproute2,iptables,busybox-static,ca-certificates,procps,util-linux"
key="$(printf '%s %s' "$PACKAGES" bookworm | sha256sum | cut -c1-16)"
BASE="rkube-base:$key"
if [ "$(docker image inspect -f '{{index .Config.Labels "rkube.inputs"}}' "$BASE" 2>/dev/null)" = "$key" ]; then
  echo "build-cluster-images: $BASE is up to date" >&2
else
  rootfs="$CACHE/rootfs-$key"
  if [ ! -x "$rootfs/usr/sbin/runc" ]; then
    rm -rf "$CACHE"/rootfs-*
    echo "build-cluster-images: debootstrap bookworm into $rootfs" >&2
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs.tmp" "$MIRROR" >&2
    chroot "$rootfs.tmp" apt-get clean
    rm -rf "$rootfs.tmp"/var/lib/apt/lists/* "$rootfs.tmp"/usr/share/{doc,man,locale}
    mv "$rootfs.tmp" "$rootfs"
  fi
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL rkube.inputs=$key" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  echo "build-cluster-images: built $BASE" >&2
fi

# --- the binaries ----------------------------------------------------------
BINS="control-plane kubelet rkube-runtime rkube-echo kube-proxy dns rkubectl"
# Built in the same cargo run for the host (scripts/compose-pki.sh), not
# put in the image.
HOST_BINS="rkube-pki"
if [ -n "${RKUBE_BIN_DIR:-}" ]; then
  BIN="$RKUBE_BIN_DIR"
  PROFILE="$BIN"
else
  flag=""
  [ "$PROFILE" = release ] && flag="--release"
  echo "build-cluster-images: cargo build $flag (control-plane, kubelet, runtime, kube-proxy, dns, rkubectl; rkube-pki)" >&2
  cargo build $flag --locked $(printf -- '--bin %s ' $BINS $HOST_BINS) >&2
  BIN="$CARGO_TARGET_DIR/$PROFILE"
fi
for b in $BINS; do
  [ -x "$BIN/$b" ] || { echo "build-cluster-images: $BIN/$b is missing" >&2; exit 1; }
done

# --- the pod images (busybox, nginx, echo) ---------------------------------
# A cache of their own: the node tests' archives (default cache) are built
# from the debug binaries and may be read while this runs.
PODIMAGES="$(RKUBE_BIN_DIR="$BIN" RKUBE_IMAGE_CACHE="${RKUBE_CLUSTER_POD_IMAGES:-$CACHE/pod-images}" \
  scripts/build-images.sh)"

# --- the project image -----------------------------------------------------
CTX="$CACHE/context"
rm -rf "$CTX"
mkdir -p "$CTX/bin" "$CTX/pod-images"
for b in $BINS; do
  strip -o "$CTX/bin/$b" "$BIN/$b"
done
cp images/cluster/rkube-node "$CTX/bin/rkube-node"
chmod 755 "$CTX/bin/"*
cp "$PODIMAGES"/*.tar "$CTX/pod-images/"
cp images/cluster/Dockerfile "$CTX/Dockerfile"
ctx_key="$( (echo "$BASE"; cd "$CTX" && find . -type f | sort | xargs sha256sum) | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{index .Config.Labels "rkube.context"}}' "$IMAGE" 2>/dev/null)" = "$ctx_key" ]; then
  echo "build-cluster-images: $IMAGE is up to date" >&2
else
  old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
  # The classic builder: Docker 20.10 without buildx; FROM is a local image.
  if ! DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$BASE" --label "rkube.context=$ctx_key" \
    --label "rkube.profile=$PROFILE" -t "$IMAGE" "$CTX" >"$CACHE/build.log" 2>&1; then
    cat "$CACHE/build.log" >&2
    echo "build-cluster-images: docker build failed" >&2
    exit 1
  fi
  # The image this one replaces, unless a container still uses it.
  [ -n "$old_id" ] && docker rmi "$old_id" >/dev/null 2>&1 || true
  echo "build-cluster-images: built $IMAGE ($PROFILE binaries)" >&2
fi
rm -rf "$CTX"
echo "$IMAGE"
