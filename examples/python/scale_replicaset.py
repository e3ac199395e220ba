#!/usr/bin/env python3
"""Scales a ReplicaSet (or RC with --kind ReplicationController).

usage: scale_replicaset.py NAME REPLICAS [--namespace NS] [--kind KIND]
"""

import argparse

from rkube_client import Client, run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("replicas", type=int)
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--kind", default="ReplicaSet")
    a = ap.parse_args()
    s = Client().scale(a.kind, a.name, a.replicas, namespace=a.namespace)
    print(f"{a.kind} {a.namespace}/{a.name} scaled: spec.replicas={s.spec.replicas} "
          f"status.replicas={s.status.replicas} selector={s.status.selector}")


if __name__ == "__main__":
    run(main)
