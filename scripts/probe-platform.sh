#!/usr/bin/env bash
# Probes what a node needs from this kernel and its tools: network
# namespaces, veth, bridges, cgroup limits (written and enforced), overlayfs,
# mount and PID namespaces, runc (joining a given netns, OOM on a memory
# limit) and the CNI bridge/host-local/portmap/firewall plugins.
#
#   scripts/probe-platform.sh            # on this host
#   scripts/probe-platform.sh --docker   # inside a privileged container
#
# Every check prints the commands it ran and their output, then one
# `RESULT: PASS|FAIL|INFO <check>` line; docs/platform.md quotes them.
# Everything is created under names with the prefix `rkp` and removed again;
# traffic goes only to addresses inside namespaces the probe made.
set -u

if [ "${1:-}" = "--docker" ]; then
  here="$(cd "$(dirname "$0")" && pwd)"
  "$here/build-probe-image.sh" >&2
  # `--privileged` is refused on these VMs (see docs/platform.md): the
  # daemon's bounding set lacks CAP_SYS_RESOURCE, so runc cannot grant "all"
  # capabilities. Everything else --privileged gives is asked for one by one.
  if [ "${RKUBE_PROBE_PRIVILEGED:-}" = 1 ]; then
    flags=(--privileged)
  else
    flags=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
      --security-opt apparmor=unconfined --security-opt systempaths=unconfined
      --device-cgroup-rule 'a *:* rwm')
  fi
  echo "\$ docker run --rm ${flags[*]} rkube-probe:bookworm bash /probe.sh --inside-container"
  exec docker run --rm "${flags[@]}" --name "rkprobe-$$" -v /var/lib/rkube-volume \
    -v "$here/probe-platform.sh:/probe.sh:ro" "${RKUBE_PROBE_IMAGE:-rkube-probe:bookworm}" \
    bash /probe.sh --inside-container
fi
where="host"
if [ "${1:-}" = "--inside-container" ]; then
  where="container"
  # Docker mounts /sys and the cgroup v1 hierarchies read-only unless
  # --privileged; with CAP_SYS_ADMIN they can be made writable again.
  echo "\$ mount -o remount,rw /sys; for each /sys/fs/cgroup/*: mount -o remount,bind,rw"
  mount -o remount,rw /sys
  for m in /sys/fs/cgroup/*; do mountpoint -q "$m" && mount -o remount,bind,rw "$m"; done
fi

BB="$(command -v busybox || echo /bin/busybox)"
CNI="${CNI_PATH:-/usr/lib/cni}"
W="$(mktemp -d /tmp/rkprobe.XXXXXX)"
NET=10.244.250
failures=0

run() { echo "\$ $*"; "$@" 2>&1 | sed 's/^/  /'; return "${PIPESTATUS[0]}"; }
result() {
  echo "RESULT: $1 $2"
  [ "$1" = FAIL ] && failures=$((failures + 1))
  echo
}
section() { echo "### $1 ($where)"; }

cleanup() {
  for c in rkp-oom rkp-net rkp-hello; do runc delete -f "$c" >/dev/null 2>&1; done
  ip netns del rkpA 2>/dev/null; ip netns del rkpB 2>/dev/null
  ip link del rkpbr0 2>/dev/null
  for d in /sys/fs/cgroup/*/rkprobe; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  umount "$W/ovl/merged" 2>/dev/null; umount "$W/tmpfs" 2>/dev/null
  rm -rf "$W" /var/lib/cni/networks/rkprobe
}
trap cleanup EXIT

section "environment"
run uname -r
run sh -c "grep -E 'cgroup' /proc/mounts"
run cat /proc/cgroups
run cat /sys/fs/cgroup/unified/cgroup.controllers
run runc --version
run iptables --version
run sh -c "CNI_COMMAND=VERSION $CNI/bridge </dev/null"
run cat /proc/sys/net/bridge/bridge-nf-call-iptables
run sh -c "iptables -S FORWARD | head -3"
run df -T / /tmp
result INFO environment

section "netns + veth + bridge"
ok=PASS
run ip netns add rkpA || ok=FAIL
run ip netns add rkpB || ok=FAIL
run ip link add rkpbr0 type bridge || ok=FAIL
run ip addr add $NET.1/24 dev rkpbr0
run ip link set rkpbr0 up
for n in A B; do
  i=$([ $n = A ] && echo 2 || echo 3)
  run ip link add rkp$n-h type veth peer name eth0 netns rkp$n || ok=FAIL
  run ip link set rkp$n-h master rkpbr0 up
  run ip -n rkp$n addr add $NET.$i/24 dev eth0
  run ip -n rkp$n link set eth0 up
  run ip -n rkp$n link set lo up
done
run "$BB" ping -c1 -W2 $NET.2 || ok=FAIL
run ip netns exec rkpA "$BB" ping -c1 -W2 $NET.1 || ok=FAIL
result $ok "netns-veth-bridge (host <-> namespace over a bridge)"

# Bridged traffic between two namespaces passes the iptables FORWARD chain
# when br_netfilter is on (bridge-nf-call-iptables=1); Docker sets FORWARD's
# policy to DROP, so this tells whether pods on one bridge need an ACCEPT.
section "namespace <-> namespace over the bridge"
if run ip netns exec rkpA "$BB" ping -c1 -W2 $NET.3; then
  result PASS "pod-to-pod-bridged"
else
  result INFO "pod-to-pod-bridged is dropped (see FORWARD policy above)"
fi
run ip netns del rkpA; run ip netns del rkpB; run ip link del rkpbr0

section "mount + pid namespaces"
if out=$(unshare --mount --pid --fork --mount-proc sh -c 'echo pid=$$; ls /proc | grep -c "^[0-9]"' 2>&1); then
  echo "\$ unshare --mount --pid --fork --mount-proc sh -c 'echo pid=\$\$; ls /proc | grep -c ^[0-9]'"
  echo "$out" | sed 's/^/  /'
  [ "$(echo "$out" | head -1)" = "pid=1" ] && result PASS mount-pid-ns || result FAIL mount-pid-ns
else
  echo "$out"; result FAIL mount-pid-ns
fi

section "cgroup v1 memory limit"
M=/sys/fs/cgroup/memory/rkprobe
ok=PASS
run mkdir $M || ok=FAIL
run sh -c "echo 33554432 > $M/memory.limit_in_bytes" || ok=FAIL
run cat $M/memory.limit_in_bytes
# A shell that holds 100 MB in a variable inside a 32 MiB cgroup.
echo "\$ sh -c 'echo \$\$ > $M/cgroup.procs; x=\$(head -c 100000000 /dev/zero | tr \"\\\\0\" a); echo survived'"
bash -c "echo \$\$ > $M/cgroup.procs; x=\$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived \${#x}" 2>&1 | sed 's/^/  /'
run cat $M/memory.oom_control
grep -q 'oom_kill [1-9]' $M/memory.oom_control || ok=FAIL
run rmdir $M
result $ok "cgroup-v1-memory-limit-enforced"

section "cgroup v1 cpu quota and shares"
C=/sys/fs/cgroup/cpu/rkprobe
ok=PASS
run mkdir $C || ok=FAIL
run sh -c "echo 100000 > $C/cpu.cfs_period_us && echo 20000 > $C/cpu.cfs_quota_us && echo 512 > $C/cpu.shares" || ok=FAIL
echo "\$ (busy loop for 1 s inside $C)"
bash -c "echo \$\$ > $C/cgroup.procs; exec timeout 1 bash -c 'while :; do :; done'"
run cat $C/cpu.stat
grep -q 'nr_throttled [1-9]' $C/cpu.stat || ok=FAIL
run rmdir $C
P=/sys/fs/cgroup/pids/rkprobe
run mkdir $P && run sh -c "echo 64 > $P/pids.max" && run cat $P/pids.max && run rmdir $P || ok=FAIL
result $ok "cgroup-v1-cpu-quota-throttles + pids"

section "overlayfs"
try_overlay() { # $1 = base dir
  mkdir -p "$1/lower" "$1/upper" "$1/work" "$W/ovl/merged" && echo base > "$1/lower/f" &&
    run mount -t overlay overlay -o "lowerdir=$1/lower,upperdir=$1/upper,workdir=$1/work" "$W/ovl/merged" &&
    echo changed > "$W/ovl/merged/f" && run cat "$1/upper/f" && run umount "$W/ovl/merged"
}
if try_overlay "$W/ovl"; then result PASS "overlay-upper-on-$(stat -f -c %T "$W")"
else result INFO "overlay-upper-on-$(stat -f -c %T "$W") refused"; fi
mkdir -p "$W/tmpfs" && mount -t tmpfs tmpfs "$W/tmpfs"
mkdir -p "$W/tmpfs/lower" && cp -a "$W/ovl/lower/f" "$W/tmpfs/lower/" 2>/dev/null
# Lower layers on the container's own filesystem, upper on a tmpfs.
mkdir -p "$W/lower2" && echo base > "$W/lower2/f"
mkdir -p "$W/tmpfs/up" "$W/tmpfs/wk"
if run mount -t overlay overlay -o "lowerdir=$W/lower2,upperdir=$W/tmpfs/up,workdir=$W/tmpfs/wk" "$W/ovl/merged" &&
  echo changed > "$W/ovl/merged/f" && run umount "$W/ovl/merged"; then
  result PASS "overlay-lower-on-$(stat -f -c %T "$W")-upper-on-tmpfs"
else result FAIL "overlay-lower-on-$(stat -f -c %T "$W")-upper-on-tmpfs"; fi
if try_overlay "$W/tmpfs"; then result PASS overlay-on-tmpfs; else result FAIL overlay-on-tmpfs; fi
umount "$W/tmpfs"
if mountpoint -q /var/lib/rkube-volume; then
  # A Docker volume: a bind mount of the host's ext4, where a node keeps --root.
  rm -rf "$W/ovl/lower"
  if try_overlay /var/lib/rkube-volume; then result PASS overlay-on-docker-volume
  else result FAIL overlay-on-docker-volume; fi
fi

section "runc"
B="$W/bundle"
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/dev" "$B/rootfs/tmp"
cp "$BB" "$B/rootfs/bin/busybox"
for t in sh ip cat hostname ps head tr ls; do ln -s busybox "$B/rootfs/bin/$t"; done
bundle_config() { # $1 = args json, $2 = extra namespaces json, $3 = resources json
  cat >"$B/config.json" <<EOF
{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},
 "args":$1,"env":["PATH=/bin"],"cwd":"/","noNewPrivileges":true,
 "capabilities":{"bounding":["CAP_NET_RAW"],"effective":["CAP_NET_RAW"],"permitted":["CAP_NET_RAW"]}},
 "root":{"path":"rootfs","readonly":false},"hostname":"rkp-pod",
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
  {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
  {"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}],
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"}$2],
  "cgroupsPath":"/rkprobe/$4","resources":$3,
  "maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"]}}
EOF
}
bundle_config '["sh","-c","echo pid=$$ host=$(hostname); ls /proc | head -3"]' ',{"type":"network"}' '{}' hello
if run runc run --bundle "$B" rkp-hello; then result PASS runc-run; else result FAIL runc-run; fi

ip netns add rkpA && ip -n rkpA link add rkpd0 type veth peer name rkpd1 && ip -n rkpA addr add $NET.9/24 dev rkpd0
bundle_config '["sh","-c","ip -o addr show rkpd0"]' ',{"type":"network","path":"/var/run/netns/rkpA"}' '{}' net
out=$(run runc run --bundle "$B" rkp-net)
echo "$out"
if echo "$out" | grep -q "$NET.9"; then
  result PASS runc-joins-netns-by-path
else result FAIL runc-joins-netns-by-path; fi
ip netns del rkpA

bundle_config '["sh","-c","x=$(head -c 100000000 /dev/zero | tr \"\\\\0\" a); echo survived"]' ',{"type":"network"}' \
  '{"memory":{"limit":33554432},"cpu":{"shares":256,"quota":50000,"period":100000},"pids":{"limit":64}}' oom
run runc run --bundle "$B" rkp-oom
code=$?
echo "  exit status: $code"
[ "$code" = 137 ] && result PASS "runc-memory-limit-oom-kill (exit 137)" || result FAIL "runc-memory-limit-oom-kill"
for d in /sys/fs/cgroup/*/rkprobe; do rmdir "$d"/* "$d" 2>/dev/null; done

section "CNI bridge + host-local + portmap + firewall (spec 1.0.0)"
conf() { # $1 = plugin json, $2 = prevResult json or empty
  local prev=""
  [ -n "$2" ] && prev=",\"prevResult\":$2"
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rkprobe\",$1$prev}"
}
cni() { # $1 = command, $2 = plugin type, $3 = netns name; stdin = config
  CNI_COMMAND=$1 CNI_CONTAINERID=rkprobe-$3 CNI_NETNS=/var/run/netns/$3 CNI_IFNAME=eth0 CNI_PATH="$CNI" "$CNI/$2"
}
bridge='"type":"bridge","bridge":"rkpbr0","isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"'$NET'.0/24"}]],"dataDir":"/var/lib/cni/networks"}'
pm='"type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}'
fw='"type":"firewall","backend":"iptables"'
ok=PASS
declare -A final ipof
for ns in rkpA rkpB; do
  ip netns add $ns
  echo "\$ CNI_COMMAND=ADD $CNI/bridge ($ns) <<< '$(conf "$bridge" "")'"
  res=$(conf "$bridge" "" | cni ADD bridge $ns) || ok=FAIL
  echo "$res" | tr -d ' \n' | sed 's/^/  /'; echo
  echo "\$ CNI_COMMAND=ADD $CNI/firewall ($ns)"
  res=$(conf "$fw" "$res" | cni ADD firewall $ns) || ok=FAIL
  final[$ns]="$res"
  ipof[$ns]=$(echo "$res" | tr -d ' \n' | grep -o '"address":"[0-9.]*' | head -1 | cut -d'"' -f4)
done
echo "\$ CNI_COMMAND=ADD $CNI/portmap (rkpA, hostPort 18080 -> 80)"
final[rkpA]=$(conf "$pm" "${final[rkpA]}" | cni ADD portmap rkpA) || ok=FAIL
run ip -n rkpA -o -4 addr show eth0
run "$BB" ping -c1 -W2 "${ipof[rkpA]}" || ok=FAIL
echo "(namespace to namespace, with the firewall plugin's ACCEPT rules in place)"
run ip netns exec rkpA "$BB" ping -c1 -W2 "${ipof[rkpB]}" || ok=FAIL
run sh -c "iptables -S CNI-FORWARD 2>/dev/null"
run ls /var/lib/cni/networks/rkprobe
run sh -c "iptables -t nat -S 2>/dev/null | grep -c CNI-"
echo "\$ CNI_COMMAND=CHECK bridge, firewall (rkpA)"
conf "$bridge" "${final[rkpA]}" | cni CHECK bridge rkpA || ok=FAIL
conf "$fw" "${final[rkpA]}" | cni CHECK firewall rkpA || ok=FAIL
echo "\$ CNI_COMMAND=DEL portmap, firewall, bridge (reverse order)"
conf "$pm" "${final[rkpA]}" | cni DEL portmap rkpA || ok=FAIL
for ns in rkpA rkpB; do
  conf "$fw" "${final[$ns]}" | cni DEL firewall $ns || ok=FAIL
  conf "$bridge" "${final[$ns]}" | cni DEL bridge $ns || ok=FAIL
  ip netns del $ns
done
run ls /var/lib/cni/networks/rkprobe
ls /var/lib/cni/networks/rkprobe | grep -q "$NET" && ok=FAIL
run sh -c "iptables -t nat -S 2>/dev/null | grep -c rkprobe"
run sh -c "iptables -S 2>/dev/null | grep -c $NET"
run sh -c "ip -o link show type veth | grep -c rkpbr0"
result $ok "cni-bridge-hostlocal-portmap-firewall ADD/CHECK/DEL"

echo "failures: $failures ($where)"
