#!/usr/bin/env bash
# Brings up a local three-replica control plane on 127.0.0.1:7001-7003, data
# in .rkube/ (kept across restarts; `scripts/down-local.sh --wipe` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bins -p rkube-control-plane -p rkubectl
bin="$CARGO_TARGET_DIR/release"
state="$PWD/.rkube"
mkdir -p "$state"
peers="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
for id in 1 2 3; do
  pidfile="$state/cp$id.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "replica $id already running (pid $(cat "$pidfile"))"
    continue
  fi
  nohup "$bin/control-plane" --id "$id" --peers "$peers" --listen "127.0.0.1:700$id" \
    --data-dir "$state/cp$id" >"$state/cp$id.log" 2>&1 &
  echo $! >"$pidfile"
done
export RKUBE_SERVER=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
for _ in $(seq 1 100); do
  if "$bin/rkubectl" get ns default >/dev/null 2>&1; then
    "$bin/rkubectl" cluster-info
    echo
    echo "The control plane is up. Use it with:"
    echo "  export PATH=\"$bin:\$PATH\" RKUBE_SERVER=$RKUBE_SERVER"
    echo "  rkubectl create -f ../shared/seed/manifests/nginx-pod.yml"
    echo "Logs: $state/cp*.log   Stop: scripts/down-local.sh"
    exit 0
  fi
  sleep 0.2
done
echo "the control plane did not become ready; see $state/cp*.log" >&2
exit 1
