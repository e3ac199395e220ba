"""A small Python client for rkube's gRPC API.

Stubs are generated from the repository's proto/ with grpcio-tools into a
cache folder on first use, so the scripts always match the server's API.

Where the cluster is and who we are, as rkubectl finds it: the kubeconfig
in RKUBECONFIG (which must exist), else ~/.rkube/config if present, else a
plaintext cluster on 127.0.0.1:7001-7003. RKUBE_SERVER (comma-separated
host:port) replaces the file's addresses and keeps its TLS settings and
credentials. A kubeconfig written by `rkube-pki init` (scripts/up.sh prints
its path) means TLS: the server is verified against the cluster CA under
its tls-server-name (control-plane.rkube.local), and the client presents its
certificate, or its bearer token. The short form (`servers: [...]` and
`namespace:` only) means plaintext.

The kubeconfig is read by a small YAML reader of its own (the block and flow
forms kubeconfigs use; no anchors or multi-line scalars), so nothing beyond
grpcio is needed.
"""

import base64
import json
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


DEFAULT_SERVERS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
CONTROL_PLANE_SERVER_NAME = "control-plane.rkube.local"


class ConfigError(Exception):
    """A kubeconfig that cannot be used; the message says why."""


# --- a minimal YAML reader ---------------------------------------------------
# Enough for kubeconfigs: block mappings and sequences (a sequence may sit at
# its key's indentation, as serde_yaml and kubectl write them), plain and
# quoted scalars, one-level flow sequences and mappings, comments.


def _strip_comment(line):
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_flow(text, where):
    """Splits the inside of [...] or {...} at top-level commas."""
    parts, cur, quote = [], "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur += ch
        elif ch in "[]{}":
            raise ConfigError(f"{where}: nested flow collections are not supported")
        elif ch == ",":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _key_value(text, where):
    """Splits `key: value` (value may be empty); None when not a mapping entry."""
    if text[:1] in "'\"":
        end = text.find(text[0], 1)
        if end < 0:
            raise ConfigError(f"{where}: unterminated quoted key")
        rest = text[end + 1:]
        if rest == ":" or rest.startswith(": "):
            return _scalar(text[: end + 1], where), rest[1:].strip()
        return None
    i = text.find(": ")
    if text.endswith(":") and (i < 0 or i > len(text) - 2):
        return text[:-1].strip(), ""
    if i < 0:
        return None
    return text[:i].strip(), text[i + 2:].strip()


def _scalar(text, where):
    t = text.strip()
    if t.startswith('"'):
        if len(t) < 2 or not t.endswith('"'):
            raise ConfigError(f"{where}: unterminated string")
        try:
            return json.loads(t)
        except ValueError as e:
            raise ConfigError(f"{where}: bad double-quoted string: {e}") from None
    if t.startswith("'"):
        if len(t) < 2 or not t.endswith("'"):
            raise ConfigError(f"{where}: unterminated string")
        return t[1:-1].replace("''", "'")
    if t[:1] in ("&", "*", "!", "|", ">"):
        raise ConfigError(f"{where}: YAML anchors, tags and block scalars are not supported")
    if t in ("", "~", "null", "Null", "NULL"):
        return None
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    return t


def _value(text, where):
    t = text.strip()
    if t.startswith("["):
        if not t.endswith("]"):
            raise ConfigError(f"{where}: unterminated [")
        return [_scalar(p, where) for p in _split_flow(t[1:-1], where)]
    if t.startswith("{"):
        if not t.endswith("}"):
            raise ConfigError(f"{where}: unterminated {{")
        out = {}
        for p in _split_flow(t[1:-1], where):
            kv = _key_value(p, where)
            if kv is None:
                raise ConfigError(f"{where}: {p!r} is not `key: value`")
            out[kv[0]] = _scalar(kv[1], where)
        return out
    return _scalar(t, where)


def parse_yaml(text, source="<config>"):
    """Parses the YAML subset kubeconfigs use into dicts, lists and strings."""
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ConfigError(f"{source}:{n}: tabs cannot indent YAML")
        body = _strip_comment(raw).rstrip()
        if not body.strip() or body.strip() in ("---", "..."):
            continue
        lines.append([len(body) - len(body.lstrip(" ")), body.strip(), n])
    if not lines:
        return {}

    def where(i):
        return f"{source}:{lines[i][2]}"

    def block(i, indent):
        if lines[i][1] == "-" or lines[i][1].startswith("- "):
            return seq(i, indent)
        return mapping(i, indent)

    def child(i, indent):
        # The value of a key whose text was empty: a deeper block, a
        # sequence at the key's own indentation, or null.
        if i < len(lines) and lines[i][0] > indent:
            return block(i, lines[i][0])
        if i < len(lines) and lines[i][0] == indent and (
            lines[i][1] == "-" or lines[i][1].startswith("- ")
        ):
            return seq(i, indent)
        return None, i

    def seq(i, indent):
        out = []
        while i < len(lines) and lines[i][0] == indent:
            text = lines[i][1]
            if not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].strip()
            if not rest:
                v, i = child(i + 1, indent)
                out.append(v)
                continue
            if _key_value(rest, where(i)) is not None and rest[:1] not in "[{":
                # A mapping that starts on the dash's line: read it as if
                # that line were indented to where its text begins.
                lines[i] = [indent + len(text) - len(rest), rest, lines[i][2]]
                v, i = mapping(i, lines[i][0])
            else:
                v, i = _value(rest, where(i)), i + 1
            out.append(v)
        if i < len(lines) and lines[i][0] > indent:
            raise ConfigError(f"{where(i)}: unexpected indentation")
        return out, i

    def mapping(i, indent):
        out = {}
        while i < len(lines) and lines[i][0] == indent:
            text = lines[i][1]
            if text == "-" or text.startswith("- "):
                break
            kv = _key_value(text, where(i))
            if kv is None:
                raise ConfigError(f"{where(i)}: expected `key: value`, found {text!r}")
            key, rest = kv
            if key in out:
                raise ConfigError(f"{where(i)}: key {key!r} given twice")
            if rest:
                out[key], i = _value(rest, where(i)), i + 1
            else:
                out[key], i = child(i + 1, indent)
        if i < len(lines) and lines[i][0] > indent:
            raise ConfigError(f"{where(i)}: unexpected indentation")
        return out, i

    v, i = block(0, lines[0][0])
    if i < len(lines):
        raise ConfigError(f"{where(i)}: unexpected indentation")
    return v


# --- connection settings -----------------------------------------------------


class Config:
    """Where the API is and how to reach it (see the module's doc)."""

    def __init__(self, servers, ca=None, cert=None, key=None, token=None,
                 server_name=CONTROL_PLANE_SERVER_NAME, namespace=None):
        self.servers = servers
        self.ca, self.cert, self.key, self.token = ca, cert, key, token
        self.server_name = server_name
        self.namespace = namespace

    @property
    def secure(self):
        return self.ca is not None


def _list(v):
    if v is None:
        return []
    if isinstance(v, str):
        v = v.split(",")
    return [str(s).strip() for s in v if s is not None and str(s).strip()]


def _strip_scheme(s):
    for p in ("https://", "http://"):
        if s.startswith(p):
            s = s[len(p):]
    return s.rstrip("/")


def _material(what, path, data, base):
    if path is not None and data is not None:
        raise ConfigError(f"{what} and {what}-data are both set")
    if path is not None:
        p = base / path
        try:
            return p.read_bytes()
        except OSError as e:
            raise ConfigError(f"{what} {p}: {e.strerror}") from None
    if data is not None:
        try:
            return base64.b64decode("".join(str(data).split()), validate=True)
        except ValueError as e:
            raise ConfigError(f"{what}-data is not base64: {e}") from None
    return None


def _section(doc, what, name, field):
    for item in doc.get(what) or []:
        if isinstance(item, dict) and item.get("name") == name:
            v = item.get(field)
            return v if isinstance(v, dict) else {}
    return None


def resolve_kubeconfig(doc, base):
    """The current context of a parsed kubeconfig as a Config."""
    if not isinstance(doc, dict):
        raise ConfigError("the file is not a mapping")
    if not (doc.get("clusters") or doc.get("contexts") or doc.get("users")):
        return Config(_list(doc.get("servers")), namespace=doc.get("namespace") or None)
    if doc.get("servers") is not None:
        raise ConfigError("top-level `servers` cannot be mixed with `clusters`: "
                          "put `servers` inside the cluster")
    contexts = doc.get("contexts") or []
    name = doc.get("current-context")
    if not name:
        if len(contexts) != 1:
            raise ConfigError("no current-context set and more than one context")
        name = contexts[0].get("name")
    ctx = _section(doc, "contexts", name, "context")
    if ctx is None:
        raise ConfigError(f"context {name!r} not found")
    cluster = _section(doc, "clusters", ctx.get("cluster"), "cluster")
    if cluster is None:
        raise ConfigError(f"context {name!r}: cluster {ctx.get('cluster')!r} not found")
    user = {}
    if ctx.get("user"):
        user = _section(doc, "users", ctx["user"], "user")
        if user is None:
            raise ConfigError(f"context {name!r}: user {ctx['user']!r} not found")
    servers = []
    for s in _list(cluster.get("servers")) + _list(cluster.get("server")):
        s = _strip_scheme(s)
        if s not in servers:
            servers.append(s)
    if not servers:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no `server` or `servers`")
    token = user.get("token")
    if token is None and user.get("token-file") is not None:
        p = base / user["token-file"]
        try:
            token = p.read_text()
        except OSError as e:
            raise ConfigError(f"token-file {p}: {e.strerror}") from None
    token = (str(token).strip() or None) if token is not None else None
    namespace = ctx.get("namespace") or None
    if cluster.get("insecure") is True:
        if user.get("client-certificate") or user.get("client-certificate-data"):
            raise ConfigError("an insecure cluster cannot use client certificates")
        return Config(servers, token=token, namespace=namespace)
    ca = _material("certificate-authority", cluster.get("certificate-authority"),
                   cluster.get("certificate-authority-data"), base)
    if ca is None:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no certificate-authority(-data) "
                          "(set `insecure: true` for a plaintext cluster)")
    cert = _material("client-certificate", user.get("client-certificate"),
                     user.get("client-certificate-data"), base)
    key = _material("client-key", user.get("client-key"), user.get("client-key-data"), base)
    if (cert is None) != (key is None):
        raise ConfigError(f"user {ctx.get('user')!r}: client-certificate and client-key go together")
    return Config(servers, ca=ca, cert=cert, key=key, token=token,
                  server_name=cluster.get("tls-server-name") or CONTROL_PLANE_SERVER_NAME,
                  namespace=namespace)


def load_config(path=None):
    """The connection settings: `path`, else RKUBECONFIG, else ~/.rkube/config,
    else plaintext defaults; RKUBE_SERVER replaces the addresses."""
    source = None
    if path:
        source = pathlib.Path(path)
        if not source.exists():
            raise ConfigError(f"config file {source} does not exist")
    elif os.environ.get("RKUBECONFIG"):
        source = pathlib.Path(os.environ["RKUBECONFIG"])
        if not source.exists():
            raise ConfigError(f"config file {source} (from RKUBECONFIG) does not exist")
    elif os.environ.get("HOME"):
        p = pathlib.Path(os.environ["HOME"]) / ".rkube" / "config"
        if p.is_file():
            source = p
    if source is None:
        cfg = Config([])
    else:
        try:
            text = source.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {source}: {e.strerror}") from None
        try:
            cfg = resolve_kubeconfig(parse_yaml(text, str(source)), source.parent)
        except ConfigError as e:
            raise ConfigError(f"config file {source}: {e}") from None
    override = _list(os.environ.get("RKUBE_SERVER"))
    if override:
        cfg.servers = override
    if not cfg.servers:
        cfg.servers = _list(DEFAULT_SERVERS)
    return cfg


class Client:
    """Talks to one replica at a time and fails over on UNAVAILABLE.

    `servers` (comma-separated host:port) replaces the configuration's
    addresses; `config` is a Config or a kubeconfig path (default: see
    load_config)."""

    def __init__(self, servers=None, timeout=10.0, config=None):
        if config is None or isinstance(config, (str, pathlib.Path)):
            config = load_config(config)
        if servers:
            config.servers = _list(servers)
        self.config = config
        self.addresses = config.servers
        self.timeout = timeout
        self._i = 0
        self._stubs = {}

    def _channel(self, address):
        c = self.config
        if not c.secure:
            return grpc.insecure_channel(address)
        creds = grpc.ssl_channel_credentials(
            root_certificates=c.ca, private_key=c.key, certificate_chain=c.cert
        )
        if c.token:
            # Sent as `authorization: Bearer <token>` on every call.
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials(c.token)
            )
        # The replicas' certificates name control-plane.rkube.local, not
        # the addresses they are dialled at.
        return grpc.secure_channel(
            address, creds, options=[("grpc.ssl_target_name_override", c.server_name)]
        )

    def _stub(self, i):
        if i not in self._stubs:
            self._stubs[i] = api_grpc.ApiStub(self._channel(self.addresses[i]))
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


def run(main):
    """Runs a script's main(): a bad configuration or an error from the
    server is one line on stderr and exit status 1, not a traceback."""
    try:
        main()
    except ConfigError as e:
        sys.exit(f"error: {e}")
    except grpc.RpcError as e:
        code = e.code().name if e.code() else "UNKNOWN"
        sys.exit(f"error: {code}: {e.details()}")
