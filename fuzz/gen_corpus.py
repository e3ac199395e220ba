#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target under fuzz/corpus/<target>/.

Run from anywhere: python3 fuzz/gen_corpus.py [SEED_DIR]. SEED_DIR (default
/work/shared/seed) holds the project's seed manifests; when it is missing,
the manifests already committed are kept. Protobuf messages are encoded by
hand (varints and length-delimited fields) so no generated code is needed.
File names are the SHA-1 of the content, as libFuzzer names its own.
"""
import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
SEED = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/seed"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


# ------------------------------------------------------------ protobuf


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def string_map(num, m):
    return b"".join(field_bytes(num, field_bytes(1, k) + field_bytes(2, v)) for k, v in m.items())


def meta(name, namespace="default", labels=None):
    return field_bytes(1, name) + field_bytes(3, namespace) + string_map(10, labels or {})


def pod_object(name, labels=None):
    container = field_bytes(1, "c") + field_bytes(2, "nginx:1.25")
    spec = field_bytes(1, container)
    pod = field_bytes(1, "v1") + field_bytes(2, "Pod") + field_bytes(3, meta(name, labels=labels)) + field_bytes(4, spec)
    return field_bytes(3, pod)


def service_object(name):
    port = field_bytes(1, "http") + field_bytes(2, "TCP") + field_varint(3, 80)
    spec = field_bytes(1, port) + string_map(2, {"app": name}) + field_bytes(3, "10.96.0.20")
    svc = field_bytes(1, "v1") + field_bytes(2, "Service") + field_bytes(3, meta(name)) + field_bytes(4, spec)
    return field_bytes(4, svc)


def namespace_object(name):
    ns = field_bytes(1, "v1") + field_bytes(2, "Namespace") + field_bytes(3, meta(name, ""))
    return field_bytes(1, ns)


def grpc(which, body):
    write("grpc_request", bytes([which]) + body)


def grpc_corpus():
    objs = [pod_object("web", {"app": "web"}), service_object("web"), namespace_object("prod")]
    for o in objs:
        grpc(0, field_bytes(1, o))  # CreateRequest
        grpc(0, field_bytes(1, o) + field_varint(2, 1))  # dry run
        grpc(1, field_bytes(1, o))  # UpdateRequest
    for patch in ['{"metadata":{"labels":{"a":"b"}}}', '{"spec":{"replicas":3}}', '{"metadata":{"resourceVersion":"7"}}']:
        for kind in ["Pod", "ReplicaSet", "Service"]:
            grpc(2, field_bytes(1, kind) + field_bytes(2, "default") + field_bytes(3, "fuzz") + field_bytes(4, "merge") + field_bytes(5, patch))
    for which in (3, 4):  # ListRequest, WatchRequest
        grpc(which, field_bytes(1, "Pod") + field_bytes(2, "default") + field_bytes(3, "app=web,tier in (a,b)") + field_bytes(4, "spec.nodeName=n1,status.phase!=Running"))
        grpc(which, field_bytes(1, "pods") + field_bytes(5, "12"))
    grpc(5, field_bytes(1, "Pod") + field_bytes(2, "default") + field_bytes(3, "web"))
    grpc(6, field_bytes(1, "Pod") + field_bytes(2, "default") + field_bytes(3, "web") + field_bytes(4, "Foreground") + field_bytes(5, field_bytes(1, "uid") + field_bytes(2, "3")) + field_varint(6, 0))
    grpc(7, field_bytes(1, "ReplicaSet") + field_bytes(2, "default") + field_bytes(3, "rs") + field_varint(4, 3))
    grpc(8, field_varint(1, 2) + field_bytes(2, b"\x08\x03\x10\x01\x18\x02\x20\x05") + field_bytes(2, b""))  # RaftBatch
    put = field_bytes(1, "/registry/pods/default/web") + field_bytes(2, pod_object("web"))
    delete = field_bytes(1, "/registry/pods/default/web") + field_varint(3, 1)
    absent = field_bytes(1, "/registry/pods/default/web") + field_varint(2, 1)
    present = field_bytes(1, "/registry/namespaces/default") + field_varint(4, 1)
    modrev = field_bytes(1, "/registry/pods/default/web") + field_varint(3, 1)
    txn = field_bytes(1, absent) + field_bytes(2, put)
    grpc(9, field_varint(1, 1) + field_varint(2, 42) + field_bytes(3, txn))  # Proposal
    grpc(10, txn)
    grpc(10, field_bytes(1, present) + field_bytes(2, put) + field_bytes(2, delete))
    grpc(10, field_bytes(1, modrev) + field_bytes(2, delete))
    entry = field_bytes(1, "/registry/pods/default/web") + field_bytes(2, pod_object("web")) + field_varint(3, 1) + field_varint(4, 2)
    grpc(11, field_varint(1, 2) + field_bytes(2, entry))  # StateSnapshot


# ------------------------------------------------------------ manifests


def manifest_corpus():
    for sub in ("manifests", "bad-manifests"):
        d = os.path.join(SEED, sub)
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                with open(os.path.join(d, f), "rb") as fh:
                    write("manifest", fh.read())
    write("manifest", '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"prod","labels":{"a":"b"}}}')
    write("manifest", '{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":"http"}]}}')
    write("manifest", "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  podCIDR: 10.244.1.0/24\n  taints: [{key: a, effect: NoSchedule}]\n")
    write("manifest", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: l, namespace: kube-system}\nspec: {holderIdentity: a, leaseDurationSeconds: 15}\n---\n")
    write("manifest", "apiVersion: v1\nkind: Endpoints\nmetadata: {name: db}\nsubsets:\n- addresses: [{ip: 10.244.1.5, hostname: db-0}]\n  ports: [{name: pg, port: 5432}]\n")


# ------------------------------------------------------------ selectors


SELECTORS = [
    "", "a", "!a", "a=b", "a==b", "a!=b", "a in (x,y),b notin (p,q),c", "a notin (x)", "a=,b=c",
    "  app = nginx ,tier in( frontend , backend ) , ! legacy,env!=prod ",
    "app.kubernetes.io/name=my_app.v1-2,example.com/x", "a in (x", "a in ()", "a in (,x)",
    "metadata.name=web,status.phase!=Running", "spec.nodeName==n1", "metadata.namespace=a\\,b",
]


def selector_corpus():
    for s in SELECTORS:
        write("selector", s)
    expr = lambda k, op, vals: field_bytes(2, field_bytes(1, k) + field_bytes(2, op) + b"".join(field_bytes(3, v) for v in vals))
    write("selector", string_map(1, {"app": "web", "tier": "front"}))
    write("selector", string_map(1, {"app": "web"}) + expr("env", "In", ["a", "b"]) + expr("x", "Exists", []))
    write("selector", expr("env", "NotIn", ["prod"]) + expr("legacy", "DoesNotExist", []))


# ------------------------------------------------------------ dns


def dns_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def dns_query(qid, name, qtype, qclass=1, flags=0x0100, edns=None):
    msg = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns is not None else 0)
    msg += dns_name(name) + struct.pack(">HH", qtype, qclass)
    if edns is not None:
        version, payload = edns
        msg += b"\x00" + struct.pack(">HHBBHH", 41, payload, 0, version, 0, 0)
    return msg


def dns_corpus():
    A, NS, CNAME, SOA, PTR, AAAA, SRV, ANY, AXFR, TXT = 1, 2, 5, 6, 12, 28, 33, 255, 252, 16
    queries = [
        dns_query(1, "web.default.svc.cluster.local", A),
        dns_query(2, "web.default.svc.cluster.local", AAAA, edns=(0, 1232)),
        dns_query(3, "_http._tcp.web.default.svc.cluster.local", SRV),
        dns_query(4, "db.prod.svc.cluster.local", A, edns=(0, 4096)),
        dns_query(5, "db-0.db.prod.svc.cluster.local", A),
        dns_query(6, "ext.default.svc.cluster.local", A),
        dns_query(7, "cluster.local", SOA),
        dns_query(8, "cluster.local", NS),
        dns_query(9, "20.0.96.10.in-addr.arpa", PTR),
        dns_query(10, "5.1.244.10.in-addr.arpa", PTR),
        dns_query(11, "nope.default.svc.cluster.local", A),
        dns_query(12, "svc.cluster.local", ANY),
        dns_query(13, "cluster.local", AXFR),
        dns_query(14, "web.default.svc.cluster.local", A, qclass=3),
        dns_query(15, "web.default.svc.cluster.local", A, edns=(1, 1232)),
        dns_query(16, "example.com", A),
        dns_query(17, "web.default.svc.cluster.local", TXT, flags=0x2800),  # UPDATE opcode
    ]
    for q in queries:
        write("dns_packet", q)
    write("dns_packet", queries[0] + b"\xffSEP" + queries[0] + b"\xffSEP" + queries[3])
    # A compression pointer in the question, a response, a cut message.
    write("dns_packet", struct.pack(">HHHHHH", 20, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1))
    write("dns_packet", struct.pack(">HHHHHH", 21, 0x8180, 1, 0, 0, 0) + dns_name("web.default.svc.cluster.local") + struct.pack(">HH", 1, 1))
    write("dns_packet", queries[0][:20])


if __name__ == "__main__":
    manifest_corpus()
    selector_corpus()
    grpc_corpus()
    dns_corpus()
