#!/usr/bin/env python3
"""Creates the seed's nginx pod from a plain Python dict (Kubernetes' field names)."""

import json
import sys

from google.protobuf import json_format

from rkube_client import Client, objects, run

SEED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "nginx-pod", "labels": {"app": "nginx", "tier": "dev"}},
    "spec": {"containers": [{"name": "nginx-container", "image": "nginx"}]},
}


def main():
    manifest = dict(SEED_POD)
    if len(sys.argv) > 1:
        manifest["metadata"] = dict(manifest["metadata"], name=sys.argv[1])
    pod = json_format.ParseDict(manifest, objects.Pod())
    created = Client().create(objects.Object(pod=pod)).pod
    print(json.dumps({
        "name": created.metadata.name,
        "uid": created.metadata.uid,
        "resourceVersion": created.metadata.resource_version,
        "phase": created.status.phase,
    }))


if __name__ == "__main__":
    run(main)
