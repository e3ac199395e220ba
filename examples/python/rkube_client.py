"""A small Python client for rkube's gRPC API.

Stubs are generated from the repository's proto/ with grpcio-tools into a
cache folder on first use, so the scripts always match the server's API.
Servers come from RKUBE_SERVER (comma-separated host:port), like rkubectl.
"""

import os
import sys
import time
import pathlib
import importlib

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
GEN = pathlib.Path(os.environ.get("RKUBE_PY_GEN", ROOT / "target" / "python-gen"))


def _generate():
    protos = sorted(str(p) for p in (PROTO / "rkube" / "v1").glob("*.proto"))
    stamp = GEN / ".stamp"
    newest = max(os.path.getmtime(p) for p in protos)
    if stamp.exists() and os.path.getmtime(stamp) >= newest:
        return
    from grpc_tools import protoc  # imported lazily: only needed to generate

    GEN.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO}", f"--python_out={GEN}", f"--grpc_python_out={GEN}"] + protos
    if protoc.main(args) != 0:
        raise RuntimeError("generating Python stubs from proto/ failed")
    stamp.touch()


_generate()
sys.path.insert(0, str(GEN))
objects = importlib.import_module("rkube.v1.objects_pb2")
api = importlib.import_module("rkube.v1.api_pb2")
api_grpc = importlib.import_module("rkube.v1.api_pb2_grpc")


class Client:
    """Talks to one replica at a time and fails over on UNAVAILABLE."""

    def __init__(self, servers=None, timeout=10.0):
        servers = servers or os.environ.get(
            "RKUBE_SERVER", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
        )
        self.addresses = [s.strip() for s in servers.split(",") if s.strip()]
        self.timeout = timeout
        self._i = 0
        self._stubs = {}

    def _stub(self, i):
        if i not in self._stubs:
            ch = grpc.insecure_channel(self.addresses[i])
            self._stubs[i] = api_grpc.ApiStub(ch)
        return self._stubs[i]

    def call(self, method, request, stream=False):
        deadline = time.monotonic() + self.timeout
        while True:
            stub = self._stub(self._i)
            try:
                if stream:
                    return getattr(stub, method)(request)
                return getattr(stub, method)(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                self._i = (self._i + 1) % len(self.addresses)
                time.sleep(0.05)

    def list(self, kind, namespace="", label_selector="", field_selector=""):
        return self.call(
            "List",
            api.ListRequest(
                kind=kind,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
            ),
        )

    def get(self, kind, name, namespace=""):
        return self.call("Get", api.GetRequest(kind=kind, namespace=namespace, name=name))

    def create(self, obj):
        return self.call("Create", api.CreateRequest(object=obj))

    def patch(self, kind, name, patch_json, namespace="", status=False):
        return self.call(
            "Patch",
            api.PatchRequest(
                kind=kind, namespace=namespace, name=name, patch_type="merge",
                patch=patch_json, status=status,
            ),
        )

    def delete(self, kind, name, namespace=""):
        return self.call("Delete", api.DeleteRequest(kind=kind, namespace=namespace, name=name))

    def scale(self, kind, name, replicas, namespace=""):
        return self.call(
            "UpdateScale",
            api.ScaleRequest(kind=kind, namespace=namespace, name=name, replicas=replicas),
        )

    def watch(self, kind, namespace="", resource_version=""):
        return self.call(
            "Watch",
            api.WatchRequest(kind=kind, namespace=namespace, resource_version=resource_version),
            stream=True,
        )


def body(obj):
    """The object inside an Object oneof (a Pod, a Node, ...)."""
    which = obj.WhichOneof("kind")
    return getattr(obj, which) if which else None
