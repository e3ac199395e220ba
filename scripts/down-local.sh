#!/usr/bin/env bash
# Stops the local control plane started by up-local.sh; --wipe also deletes
# its data.
set -euo pipefail
cd "$(dirname "$0")/.."
state="$PWD/.rkube"
for pidfile in "$state"/cp*.pid; do
  [ -f "$pidfile" ] || continue
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
done
if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$state"
fi
echo "stopped"
