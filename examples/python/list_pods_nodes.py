#!/usr/bin/env python3
"""Lists nodes and pods (all namespaces), like `rkubectl get nodes,pods -A -o wide`."""

from rkube_client import Client, body, run


def main():
    c = Client()
    print("NODE\tREADY\tPODCIDR")
    for o in c.list("Node").items:
        n = body(o)
        ready = next((x.status for x in n.status.conditions if x.type == "Ready"), "Unknown")
        print(f"{n.metadata.name}\t{ready}\t{n.spec.pod_cidr}")
    print("NAMESPACE\tPOD\tPHASE\tNODE\tIP")
    for o in c.list("Pod").items:
        p = body(o)
        print(
            f"{p.metadata.namespace}\t{p.metadata.name}\t{p.status.phase}\t"
            f"{p.spec.node_name or '<none>'}\t{p.status.pod_ip or '<none>'}"
        )


if __name__ == "__main__":
    run(main)
