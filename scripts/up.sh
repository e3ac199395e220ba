#!/usr/bin/env bash
# Builds everything the compose cluster needs and brings it up: three
# control-plane replicas, three worker nodes, two DNS replicas
# (docker-compose.yml, docs/compose.md). Returns once every container is
# healthy (all nodes Ready), then prints how to point rkubectl at it.
#
#   scripts/up.sh            # release binaries (the first build takes a while)
#   scripts/up.sh --debug    # debug binaries (what scripts/test.sh built)
#
# The cluster is secure: scripts/compose-pki.sh makes (once; kept across
# runs) the CA and every credential in RKUBE_PKI (default
# .rkube/compose-pki), each container mounts only its own, and rkubectl on
# the host uses $RKUBE_PKI/admin.kubeconfig (RKUBECONFIG).
#
# RKUBE_NET (default 172.28.5) is the compose network's /24; the API is on
# its .11, .12, .13 port 7000 (TLS). Stop with `docker-compose down` (add -v
# to delete the cluster's data) from the repository's root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
profile="${RKUBE_PROFILE:-release}"
case "${1:-}" in
  --debug) profile=debug ;;
  --release | "") ;;
  *) echo "usage: scripts/up.sh [--debug|--release]" >&2; exit 2 ;;
esac

fail() { echo "up: $*" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || fail "docker is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer: is it running, and may you use it (root or the docker group)?"
# Debian's packages for what is missing (as root; otherwise say what to do).
missing=""
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 ||
  missing="$missing docker-compose"
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || fail "missing:$missing (apt-get install$missing)"
  echo "up: installing$missing" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
fi
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi

net="${RKUBE_NET:-172.28.5}"
# The images (one cargo build, rkube-pki included), then the PKI the
# containers mount from: an absolute path, which compose takes as it is.
scripts/build-cluster-images.sh --profile "$profile" >/dev/null
RKUBE_PKI="$(realpath -m "${RKUBE_PKI:-$PWD/.rkube/compose-pki}")"
export RKUBE_PKI
RKUBE_BIN_DIR="${RKUBE_BIN_DIR:-$CARGO_TARGET_DIR/$profile}" scripts/compose-pki.sh >/dev/null

start=$SECONDS
if ! out="$("${compose[@]}" up -d 2>&1)"; then
  echo "$out" >&2
  case "$out" in
    *overlap*) fail "another Docker network already uses $net.0/24: pick a free one, e.g. RKUBE_NET=172.28.6 scripts/up.sh" ;;
    *) fail "compose up failed (above)" ;;
  esac
fi

# What `docker compose up --wait` does, for either compose tool: wait for
# every container's health check (control plane serving, nodes Ready, DNS
# ready).
ids="$("${compose[@]}" ps -q)"
deadline=$((SECONDS + ${RKUBE_UP_TIMEOUT:-300}))
while :; do
  waiting=""
  for id in $ids; do
    state="$(docker inspect -f '{{.Name}} {{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")"
    case "$state" in
      *" running/healthy") ;;
      *" exited/"* | *" dead/"*) fail "container ${state%% *} stopped; see: ${compose[*]} logs ${state%% *}" ;;
      *) waiting="$waiting ${state%% *}" ;;
    esac
  done
  [ -z "$waiting" ] && break
  if [ $SECONDS -gt $deadline ]; then
    "${compose[@]}" ps >&2
    fail "not healthy after ${RKUBE_UP_TIMEOUT:-300}s:$waiting (see ${compose[*]} logs)"
  fi
  sleep 1
done

bin="$CARGO_TARGET_DIR/$profile"
export RKUBECONFIG="$RKUBE_PKI/admin.kubeconfig"
unset RKUBE_SERVER
"$bin/rkubectl" get nodes -o wide
echo
echo "The cluster is up ($((SECONDS - start)) s from \`up\` to all nodes Ready). Use it with:"
echo "  export PATH=\"$bin:\$PATH\" RKUBECONFIG=$RKUBECONFIG"
echo "  rkubectl create -f ../shared/seed/manifests/nginx-pod.yml"
echo "  rkubectl get pods -o wide"
echo "Logs: ${compose[*]} logs -f wn1   Stop: ${compose[*]} down   (-v also deletes the data)"
