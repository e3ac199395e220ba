#!/usr/bin/env python3
"""Watches objects of a kind live (default: Event), printing each change.

usage: watch_events.py [KIND] [--count N]
Stops after N changes when --count is given (used by the tests).
"""

import argparse

from rkube_client import Client, body, run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", nargs="?", default="Event")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--namespace", default="")
    a = ap.parse_args()
    c = Client()
    listed = c.list(a.kind, namespace=a.namespace)
    print(f"listed {len(listed.items)} {a.kind} at revision {listed.resource_version}", flush=True)
    seen = 0
    for ev in c.watch(a.kind, namespace=a.namespace, resource_version=listed.resource_version):
        o = body(ev.object)
        extra = ""
        if a.kind == "Event":
            extra = f" {o.reason}: {o.message}"
        print(f"{ev.type} {a.kind} {o.metadata.namespace}/{o.metadata.name} rv={ev.resource_version}{extra}", flush=True)
        seen += 1
        if a.count and seen >= a.count:
            return


if __name__ == "__main__":
    run(main)
