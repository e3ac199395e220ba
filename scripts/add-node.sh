#!/usr/bin/env bash
# Adds worker nodes to a running compose cluster (scripts/up.sh): for each
# NAME, issues a node credential from the cluster's CA
# (scripts/compose-pki.sh NAME: `rkube-pki init --nodes ...`) and starts a
# container of the compose service `wn` (profile extra) with `compose run`,
# mounting only that node's kubeconfig and kube-proxy's, read-only. Its
# address comes from the network's dynamic range (.128 up), its state from
# an anonymous volume.
#
#   scripts/add-node.sh [--debug] NAME...      e.g. scripts/add-node.sh wn4 wn5
#
# The node registers and turns Ready within seconds (rkubectl get nodes).
# Removing one: docker rm -fv <container> (-v: its state volume; printed here, labelled
# rkube.node=NAME), then rkubectl delete node NAME. `compose down` removes
# these containers too; `compose up`/`restart` do not start them again
# (`docker start <container>` does).
#
# The same environment as up.sh: RKUBE_NET, RKUBE_PKI, RKUBE_IMAGE, and
# COMPOSE_PROJECT_NAME when the cluster runs under a project name of its
# own; RKUBE_BIN_DIR when rkube-pki is already built.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${RKUBE_PROFILE:-release}"
names=()
for a in "$@"; do
  case "$a" in
    --debug) profile=debug ;;
    --release) profile=release ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "add-node: unknown option $a" >&2; exit 2 ;;
    *) names+=("$a") ;;
  esac
done
fail() { echo "add-node: $*" >&2; exit 1; }
[ ${#names[@]} -gt 0 ] || { echo "usage: scripts/add-node.sh [--debug] NAME..." >&2; exit 2; }
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
compose+=(-f docker-compose.yml --profile extra)

# Compose's own default project name: the directory's, lower case.
project="${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9_-')}"
RKUBE_PKI="$(realpath -m "${RKUBE_PKI:-$PWD/.rkube/compose-pki}")"
export RKUBE_PKI
[ -f "$RKUBE_PKI/ca.key" ] ||
  fail "no cluster CA in $RKUBE_PKI: bring the cluster up with scripts/up.sh first (or set RKUBE_PKI)"
[ -n "$("${compose[@]}" ps -q cp1 2>/dev/null)" ] ||
  fail "the compose cluster is not running (no cp1 container in project $project; COMPOSE_PROJECT_NAME names another)"

for n in "${names[@]}"; do
  case "$n" in
    wn1 | wn2 | wn3) fail "$n is one of docker-compose.yml's own nodes" ;;
  esac
  if [ -n "$(docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=rkube.node=$n")" ]; then
    fail "a container of node $n already exists in project $project"
  fi
done
# Validates the names (DNS-1123) and issues what is missing, with the
# rkube-pki up.sh built (built here if it is not there).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -z "${RKUBE_BIN_DIR:-}" ] && [ -x "$CARGO_TARGET_DIR/$profile/rkube-pki" ]; then
  export RKUBE_BIN_DIR="$CARGO_TARGET_DIR/$profile"
fi
scripts/compose-pki.sh --profile "$profile" "${names[@]}" >/dev/null

for n in "${names[@]}"; do
  "${compose[@]}" run -d --no-deps -l "rkube.node=$n" -e "RKUBE_NODE_NAME=$n" \
    -v "$RKUBE_PKI/node-$n.kubeconfig:/etc/rkube/kubelet.kubeconfig:ro" \
    -v "$RKUBE_PKI/kube-proxy.kubeconfig:/etc/rkube/kube-proxy.kubeconfig:ro" \
    wn
done
