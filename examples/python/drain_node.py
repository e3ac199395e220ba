#!/usr/bin/env python3
"""Drains a node: cordons it (spec.unschedulable) and deletes its pods,
leaving DaemonSet-owned pods alone, like `kubectl drain --ignore-daemonsets`.
Controllers recreate the evicted pods on other nodes.

usage: drain_node.py NODE
"""

import json
import sys

from rkube_client import Client, body, run


def main():
    node = sys.argv[1]
    c = Client()
    c.patch("Node", node, json.dumps({"spec": {"unschedulable": True}}))
    print(f"node/{node} cordoned")
    for o in c.list("Pod", field_selector=f"spec.nodeName={node}").items:
        p = body(o)
        owners = [r.kind for r in p.metadata.owner_references if r.controller]
        if "DaemonSet" in owners:
            print(f"ignoring DaemonSet-managed pod {p.metadata.namespace}/{p.metadata.name}")
            continue
        c.delete("Pod", p.metadata.name, namespace=p.metadata.namespace)
        print(f"evicting pod {p.metadata.namespace}/{p.metadata.name}")
    print(f"node/{node} drained")


if __name__ == "__main__":
    run(main)
