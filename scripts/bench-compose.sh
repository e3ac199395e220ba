#!/usr/bin/env bash
# The compose cluster's benchmark (issue 7; not a test): brings up its own
# project (rkube-bench, RKUBE_NET default 172.28.9) from the images of
# scripts/build-cluster-images.sh and measures
#
#   - `up -d` to every container healthy, and to all nodes Ready in the API;
#   - `docker kill` of a worker to its ReplicationController pods Running on
#     the other nodes (median of 5, a different node each round when it has
#     pods), then `docker start` to Ready;
#   - `docker kill` of the control-plane leader to the first acknowledged
#     write through the others (median of 5);
#   - memory of every container at rest, and with 300 pods (busybox sleep)
#     spread over the three workers.
#
#   scripts/bench-compose.sh [--debug]      # release binaries by default
#
# The project is taken down (with its volumes) at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
profile=release
[ "${1:-}" = --debug ] && profile=debug
export RKUBE_NET="${RKUBE_NET:-172.28.9}" RKUBE_IMAGE="${RKUBE_IMAGE:-rkube:latest}"
export RKUBE_DNS_UPSTREAM=127.0.0.1
PODS="${RKUBE_BENCH_PODS:-300}"
ROUNDS="${RKUBE_BENCH_ROUNDS:-5}"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
compose+=(-p rkube-bench -f docker-compose.yml)
scripts/build-cluster-images.sh --profile "$profile" >/dev/null
# A PKI of its own (the cluster is secure, as scripts/up.sh makes it).
export RKUBE_PKI="${RKUBE_PKI:-$PWD/.rkube/compose-pki-bench}"
RKUBE_BIN_DIR="${RKUBE_BIN_DIR:-$CARGO_TARGET_DIR/$profile}" scripts/compose-pki.sh >/dev/null
export PATH="$CARGO_TARGET_DIR/$profile:$PATH"
export RKUBECONFIG="$RKUBE_PKI/admin.kubeconfig"
unset RKUBE_SERVER
work="$(mktemp -d)"
cleanup() { "${compose[@]}" down -v -t 2 >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
median() { python3 -c "import sys, statistics; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }
# until SECONDS CMD...: runs CMD every 0.2 s until it succeeds.
until_ok() {
  local limit=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$limit" ] || { echo "bench: timed out: $*" >&2; exit 1; }
    sleep 0.2
  done
}
healthy() {
  local id
  for id in $("${compose[@]}" ps -q); do
    [ "$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")" = running/healthy ] || return 1
  done
}
nodes_ready() {
  [ "$(rkubectl get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)" -eq 3 ]
}
node_ready() { rkubectl get node "$1" --no-headers | awk '{print $2}' | grep -qx Ready; }
node_not_ready() { ! rkubectl get node "$1" --no-headers | awk '{print $2}' | grep -qx Ready; }
# pods PREFIX [NOT-ON-NODE]: prints how many live pods named PREFIX* are
# Running (not on NOT-ON-NODE).
pods() {
  rkubectl get pods -o json | python3 -c '
import json, sys
prefix, avoid = sys.argv[1], sys.argv[2]
n = 0
for p in json.load(sys.stdin)["items"]:
    m, st = p["metadata"], p.get("status", {})
    if m["name"].startswith(prefix) and "deletionTimestamp" not in m \
       and st.get("phase") == "Running" and p["spec"].get("nodeName") != avoid:
        n += 1
print(n)' "$1" "${2:-}"
}
pods_eq() { [ "$(pods "$1" "${3:-}")" -eq "$2" ]; }
no_terminating() { ! rkubectl get pods --no-headers | grep -q Terminating; }
nodes_of() {
  rkubectl get pods -o json | python3 -c '
import json, sys
print(" ".join(sorted({p["spec"].get("nodeName", "") for p in json.load(sys.stdin)["items"]
                       if p["metadata"]["name"].startswith(sys.argv[1])})))' "$1"
}
leader() { rkubectl cluster-info | sed -n 's/^Leader: replica \([0-9]*\).*/cp\1/p'; }
# A create that went through without its answer is AlreadyExists on retry.
write() { local out; out="$(rkubectl create -f "$1" 2>&1)" || [[ "$out" == *AlreadyExists* ]]; }

echo "== up"
"${compose[@]}" down -v -t 1 >/dev/null 2>&1 || true
t0="$(now)"
"${compose[@]}" up -d >/dev/null 2>&1
until_ok 300 nodes_ready
t_nodes="$(since "$t0")"
until_ok 300 healthy
t_healthy="$(since "$t0")"
echo "up -d -> 3 nodes Ready: ${t_nodes} s; -> every container healthy: ${t_healthy} s"

echo "== memory at rest"
sleep 5
docker stats --no-stream --format '{{.Name}}\t{{.MemUsage}}' $("${compose[@]}" ps -q) | sort | tee "$work/mem-rest"

echo "== worker killed -> its RC pods Running elsewhere (x$ROUNDS)"
rkubectl create -f ../shared/seed/manifests/nginx-rc.yml >/dev/null
rkubectl scale rc nginx-rc --replicas=6 >/dev/null
kills=()
for i in $(seq 1 "$ROUNDS"); do
  until_ok 120 pods_eq nginx-rc- 6
  on="$(nodes_of nginx-rc-)"
  victim="wn$(( (i - 1) % 3 + 1 ))"
  case " $on " in *" $victim "*) ;; *) victim="${on%% *}" ;; esac
  id="$("${compose[@]}" ps -q "$victim")"
  docker kill "$id" >/dev/null
  t0="$(now)"
  until_ok 120 pods_eq nginx-rc- 6 "$victim"
  t_moved="$(since "$t0")"
  docker start "$id" >/dev/null
  t1="$(now)"
  until_ok 120 node_ready "$victim"
  t_back="$(since "$t1")"
  until_ok 120 no_terminating
  echo "round $i: $victim killed -> 6 RC pods Running elsewhere in $t_moved s; started -> Ready in $t_back s"
  kills+=("$t_moved")
done
echo "median: $(median "${kills[@]}") s"

echo "== control-plane leader killed -> first acknowledged write (x$ROUNDS)"
fails=()
for i in $(seq 1 "$ROUNDS"); do
  until_ok 60 healthy
  l="$(leader)"
  id="$("${compose[@]}" ps -q "$l")"
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench-%s\n' "$i" >"$work/ns$i.yml"
  docker kill "$id" >/dev/null
  t0="$(now)"
  until_ok 60 write "$work/ns$i.yml"
  t_write="$(since "$t0")"
  docker start "$id" >/dev/null
  echo "round $i: leader $l killed -> write acknowledged in $t_write s (new leader $(leader))"
  fails+=("$t_write")
done
echo "median: $(median "${fails[@]}") s"
until_ok 60 healthy

echo "== $PODS pods"
rkubectl delete rc nginx-rc >/dev/null
cat >"$work/many.yml" <<EOF
apiVersion: v1
kind: ReplicationController
metadata:
  name: many
spec:
  replicas: $PODS
  selector:
    app: many
  template:
    metadata:
      labels:
        app: many
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: busybox
        command: [sleep, "86400"]
EOF
t0="$(now)"
rkubectl create -f "$work/many.yml" >/dev/null
until_ok 1200 pods_eq many- "$PODS"
echo "$PODS pods Running in $(since "$t0") s"
docker stats --no-stream --format '{{.Name}}\t{{.MemUsage}}' $("${compose[@]}" ps -q) | sort | tee "$work/mem-pods"
