#!/usr/bin/env bash
# Makes (or completes) the compose cluster's PKI with `rkube-pki init`: the
# cluster CA, a certificate per control-plane replica (SANs: its compose
# address and service name, plus control-plane.rkube.local, the name every
# client verifies), a credential and kubeconfig per node (wn1-wn3, any node
# credential already in the directory, and NODE... given here), kube-proxy's,
# kube-dns's, the admin's (admin.kubeconfig, for the host) and the token
# file. Idempotent: what exists is kept, kubeconfigs are rewritten (servers:
# RKUBE_NET's .11-.13 port 7000). Prints the directory.
#
#   scripts/compose-pki.sh [--profile debug|release] [NODE...]
#
# RKUBE_PKI: the directory (default .rkube/compose-pki; docker-compose.yml
# mounts from the same default). RKUBE_NET: the compose /24 (default
# 172.28.5). RKUBE_BIN_DIR: where rkube-pki is already built (else it is
# built with cargo, profile --profile, default release).
#
# docker-compose.yml mounts into each container only that container's files
# (read-only); ca.key stays on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
profile="${RKUBE_PROFILE:-release}"
nodes="wn1 wn2 wn3"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "compose-pki: unknown option $1" >&2; exit 2 ;;
    *) nodes="$nodes $1"; shift ;;
  esac
done
case "$profile" in
  debug | release) ;;
  *) echo "compose-pki: --profile is debug or release, not $profile" >&2; exit 2 ;;
esac

net="${RKUBE_NET:-172.28.5}"
pki="${RKUBE_PKI:-$PWD/.rkube/compose-pki}"
if [ -n "${RKUBE_BIN_DIR:-}" ]; then
  pkibin="$RKUBE_BIN_DIR/rkube-pki"
else
  flag=""
  [ "$profile" = release ] && flag="--release"
  cargo build $flag --locked --bin rkube-pki >&2
  pkibin="$CARGO_TARGET_DIR/$profile/rkube-pki"
fi
[ -x "$pkibin" ] || { echo "compose-pki: $pkibin is missing" >&2; exit 1; }

# Nodes added earlier (scripts/add-node.sh) keep their credential and get
# their kubeconfig rewritten with the rest.
if [ -d "$pki" ]; then
  for c in "$pki"/node-*.crt; do
    [ -e "$c" ] || continue
    n="${c##*/node-}"
    nodes="$nodes ${n%.crt}"
  done
fi
list="$(echo "$nodes" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | paste -sd, -)"
RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "$pkibin" init --dir "$pki" \
  --replicas "1=$net.11+cp1,2=$net.12+cp2,3=$net.13+cp3" \
  --nodes "$list" \
  --servers "$net.11:7000,$net.12:7000,$net.13:7000" >/dev/null
echo "$pki"
