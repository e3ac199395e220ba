#!/usr/bin/env bash
# Runs the runtime shim inside a Docker container started the way a node
# container must be started on these machines (see docs/platform.md:
# --privileged is refused, so capabilities are granted one by one and the
# cgroup hierarchies remounted read-write), then drives it from the host
# over its socket: an nginx pod served on its pod IP (fetched from inside
# the node container), an OOM kill under a memory limit, and removal
# leaving nothing behind. Evidence for docs/platform.md; needs Docker,
# scripts/build-images.sh's archives and Python's grpcio-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
IMAGES="$(./scripts/build-images.sh)"
./scripts/build-probe-image.sh >&2
SHIM="$CARGO_TARGET_DIR/debug/rkube-runtime"
WORK="$(mktemp -d /tmp/rkube-nested.XXXXXX)"
NAME="rkube-nested-$$"
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm -f "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "\$ docker run -d --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined ... --tmpfs /run -v <volume>:/var/lib/rkube rkube-probe:bookworm"
docker run -d --name "$NAME" \
  --cap-add ALL --cap-drop SYS_RESOURCE \
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
  --tmpfs /run:exec,mode=755 -v "$NAME:/var/lib/rkube" \
  -v "$SHIM:/usr/local/bin/rkube-runtime:ro" -v "$IMAGES:/images:ro" \
  -v "$WORK:/sock" \
  rkube-probe:bookworm sleep infinity >/dev/null
docker exec "$NAME" sh -c '
  mount -o remount,rw /sys
  for m in /sys/fs/cgroup/*; do mountpoint -q "$m" && mount -o remount,bind,rw "$m"; done
  nohup rkube-runtime --socket /sock/runtime.sock --root /var/lib/rkube/runtime \
    --pod-cidr 10.244.1.0/24 --preload /images >/var/lib/rkube/shim.log 2>&1 &'

# Stubs for the driver, generated from the proto into the scratch dir.
python3 -m grpc_tools.protoc -I proto --python_out="$WORK" --grpc_python_out="$WORK" \
  proto/rkube/runtime/v1/runtime.proto
touch "$WORK/rkube/__init__.py" "$WORK/rkube/runtime/__init__.py" "$WORK/rkube/runtime/v1/__init__.py"
PYTHONPATH="$WORK" python3 - "$WORK/runtime.sock" "$NAME" <<'EOF'
import subprocess, sys, time
import grpc
from rkube.runtime.v1 import runtime_pb2 as pb, runtime_pb2_grpc as rpc

sock, node = sys.argv[1], sys.argv[2]
deadline = time.time() + 120
while True:
    try:
        # The socket path is no valid HTTP/2 authority; name one.
        channel = grpc.insecure_channel("unix://" + sock, options=[("grpc.default_authority", "localhost")])
        rt = rpc.RuntimeServiceStub(channel)
        print("runtime:", rt.Version(pb.VersionRequest()).runtime_name)
        break
    except grpc.RpcError:
        if time.time() > deadline:
            raise
        time.sleep(0.2)

def in_node(*cmd):
    return subprocess.run(["docker", "exec", node, *cmd], capture_output=True, text=True)

def wait(what, check, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        v = check()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit("timed out waiting for " + what)

meta = pb.PodSandboxMetadata(name="nested-nginx", namespace="default", uid="u-1")
sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pb.PodSandboxConfig(metadata=meta))).pod_sandbox_id
ip = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
print("sandbox ready, pod IP", ip)

def container(name, image, command=(), memory=0):
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
                             command=list(command))
    if memory:
        cfg.linux.resources.memory_limit_in_bytes = memory
    cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg)).container_id
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid

container("nginx", "nginx")
page = wait("nginx on the pod IP", lambda: (lambda r: r.returncode == 0 and r.stdout)(
    in_node("busybox", "wget", "-qO-", "http://%s/" % ip)))
print("GET http://%s/ from inside the node container:" % ip, [l for l in page.splitlines() if "<title>" in l])

hog = container("hog", "busybox", ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a)"], memory=32 << 20)
def exited():
    s = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=hog)).status
    return s if s.state == pb.CONTAINER_EXITED else None
s = wait("the hog to exit", exited)
print("memory-limited container: reason=%s exit_code=%d" % (s.reason, s.exit_code))

rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
left = in_node("sh", "-c", "ip netns list; ip -o link show master cbr0; find /sys/fs/cgroup/*/rkube -mindepth 1 -type d 2>/dev/null; "
               "ls /var/lib/cni/networks/rkube | grep -v -e lock -e last_reserved; "
               "grep /var/lib/rkube/runtime/ /proc/mounts | grep -v ' /var/lib/rkube '")
print("left after RemovePodSandbox: %r" % left.stdout)
ok = s.reason == "OOMKilled" and "Welcome to nginx" in page and not left.stdout.strip()
print("RESULT:", "PASS" if ok else "FAIL", "runtime shim nested in a Docker node container")
sys.exit(0 if ok else 1)
EOF
