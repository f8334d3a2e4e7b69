#!/usr/bin/env python3
"""The learning-rate check on the maze (docs/neuromodulation.md §4, issue 29).

usage: tools/mazelr.py [LR_DIR] [LONG_DIR]

LR_DIR (default docs/data/maze-lr3) holds the 10,000-update runs of the plastic and
non-plastic kinds at learning rate 1e-3, one `<kind>-seed-<k>.csv` each (100-update means,
written by tools/blocks.py); LONG_DIR (default docs/data/maze-30k) the 30,000-update runs (the
plastic kinds at the published 1e-4, the LSTM at 1e-2). Prints each run's mean reward per
episode over updates 0-3k, 3-6k, 6-9k (every run has these; seed 1 of the long non-LSTM runs
only as 3000-update blocks) and 9-10k (for the 10k runs the last tenth, their final reward as
`bohp reproduce` computes it; blank for seed 1 of the long non-LSTM runs); then, for the 6-9k
and 9-10k blocks, the median [IQR] of each group whose seeds all have the block, and exact
two-sided rank-sum tests between each lr 1e-3 group and every other group. Standard library only.
"""
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from maze30k import KINDS, curves, load, quantile, rank_sum  # noqa: E402


def load_short(data):
    """{kind: {seed: [mean over 0-3k, 3-6k, 6-9k, 9-10k]}}."""
    runs = {}
    for kind, seed, rows in curves(data, 10000):
        runs.setdefault(kind, {})[seed] = [sum(rows[i:i + 30]) / 30 for i in range(0, 90, 30)] + [sum(rows[90:]) / 10]
    return runs


def main():
    args = sys.argv[1:]
    short = load_short(args[0] if args else "docs/data/maze-lr3")
    long = load(args[1] if len(args) > 1 else "docs/data/maze-30k")
    groups = []
    for kind in KINDS:
        if kind in long:
            lr = "1e-2" if kind == "lstm" else "1e-4"
            groups.append((f"{kind}, lr {lr}",
                           {s: b[0][:3] + [None if b[1] is None else b[1][9]] for s, b in long[kind].items()}))
        if kind in short:
            groups.append((f"{kind}, lr 1e-3", short[kind]))
    print("| kind, learning rate | seed | 0-3k | 3-6k | 6-9k | 9-10k (final of a 10k run) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, runs in groups:
        for seed, b in sorted(runs.items()):
            cells = " | ".join("" if v is None else f"{v:.1f}" for v in b)
            print(f"| {name} | {seed} | {cells} |")
    for col, label in ((2, "6-9k"), (3, "9-10k")):
        block = {name: [b[col] for _, b in sorted(runs.items())] for name, runs in groups}
        block = {name: v for name, v in block.items() if None not in v}
        print(f"\nMedian [IQR] over seeds of the {label} block, and exact two-sided rank-sum tests on it:\n")
        for name, v in block.items():
            print(f"- {name}: {quantile(v, 0.5):.1f} [{quantile(v, 0.25):.1f}, {quantile(v, 0.75):.1f}] ({len(v)} seeds)")
        print("\n| groups | U | p |\n|---|---:|---:|")
        for a, b in itertools.combinations(block, 2):
            # The 1e-4 runs against each other are in tools/maze30k.py; here: what the rate changes.
            if "1e-3" in a + b and len(block[a]) > 1 and len(block[b]) > 1:
                u, p = rank_sum(block[a], block[b])
                print(f"| {a} vs {b} | {u:g} | {p:.3f} |")

if __name__ == "__main__":
    main()
