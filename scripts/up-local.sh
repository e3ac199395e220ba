#!/usr/bin/env bash
# Brings up a local three-replica control plane on 127.0.0.1:7001-7003, data
# in .rkube/ (kept across restarts; `scripts/down-local.sh --wipe` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bins -p rkube-control-plane -p rkubectl -p rkube-pki
bin="$CARGO_TARGET_DIR/release"
state="$PWD/.rkube"
mkdir -p "$state"
# The cluster CA and credentials (kept across restarts; made only if missing).
pki="$state/pki"
"$bin/rkube-pki" init --dir "$pki" --replicas 1=127.0.0.1,2=127.0.0.1,3=127.0.0.1 \
  --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 >/dev/null
peers="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
for id in 1 2 3; do
  pidfile="$state/cp$id.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "replica $id already running (pid $(cat "$pidfile"))"
    continue
  fi
  nohup "$bin/control-plane" --id "$id" --peers "$peers" --listen "127.0.0.1:700$id" \
    --data-dir "$state/cp$id" \
    --tls-cert "$pki/control-plane-$id.crt" --tls-key "$pki/control-plane-$id.key" \
    --client-ca "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" >"$state/cp$id.log" 2>&1 &
  echo $! >"$pidfile"
done
export RKUBECONFIG="$pki/admin.kubeconfig"
for _ in $(seq 1 100); do
  if "$bin/rkubectl" get ns default >/dev/null 2>&1; then
    "$bin/rkubectl" cluster-info
    echo
    echo "The control plane is up. Use it with:"
    echo "  export PATH=\"$bin:\$PATH\" RKUBECONFIG=$RKUBECONFIG"
    echo "  rkubectl create -f ../shared/seed/manifests/nginx-pod.yml"
    echo "Logs: $state/cp*.log   Stop: scripts/down-local.sh"
    exit 0
  fi
  sleep 0.2
done
echo "the control plane did not become ready; see $state/cp*.log" >&2
exit 1
