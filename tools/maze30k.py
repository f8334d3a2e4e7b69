#!/usr/bin/env python3
"""Summary of the 30,000-update maze runs (docs/neuromodulation.md §4, issue 29).

usage: tools/maze30k.py [DATA_DIR] [--svg OUT.svg]

DATA_DIR (default docs/data/maze-30k) holds each kept run's curve, `<kind>-seed-<k>.csv`
(the mean reward per episode over each block of 100 updates, written by tools/blocks.py), and
`seed-1-blocks.csv`: the runs of seed 1, which ran before curves were kept, as their means
over each block of 3000 updates. Prints, per kind, each seed's final reward (the mean over the
last 3000 updates), the median and IQR (linear interpolation, as `bohp reproduce`), the
3000-update block means, and the exact two-sided Mann-Whitney p-value between every two kinds
(all arrangements enumerated; ties count half). With --svg, draws every run's curve in means
over 1000 updates (seed 1: its 3000-update blocks), coloured by kind. Standard library only.
"""
import csv
import itertools
import os
import sys

KINDS = ["non-plastic", "plastic", "simple", "retroactive", "lstm"]
# bohp's figures::KIND_PALETTE, in the same order.
COLOURS = ["#7f7f7f", "#1f77b4", "#2ca02c", "#d62728", "#9467bd"]
BLOCK = 3000


def quantile(values, q):
    s = sorted(values)
    rank = q * (len(s) - 1)
    lo, hi = int(rank), min(int(rank) + 1, len(s) - 1)
    return s[lo] + (rank - lo) * (s[hi] - s[lo])


def u_stat(a, b):
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)


def rank_sum(a, b):
    """U of `a` and the exact two-sided p-value over every split of the pooled values."""
    pooled = a + b
    mean = len(a) * len(b) / 2
    observed = abs(u_stat(a, b) - mean)
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(a)):
        first = [pooled[i] for i in idx]
        rest = [pooled[i] for i in range(len(pooled)) if i not in idx]
        total += 1
        hits += abs(u_stat(first, rest) - mean) >= observed - 1e-12
    return u_stat(a, b), hits / total


def curves(data, updates):
    """(kind, seed, 100-update means) of each `<kind>-seed-<k>.csv` in `data`, each checked to
    be a finished run of `updates` updates."""
    for name in sorted(os.listdir(data)):
        if name.endswith(".csv") and "-seed-" in name:
            kind, seed = name[:-4].rsplit("-seed-", 1)
            rows = [float(r["mean_reward_per_episode"]) for r in csv.DictReader(open(os.path.join(data, name)))]
            if len(rows) != updates // 100:
                sys.exit(f"{name}: {len(rows)} blocks of 100 updates, expected {updates // 100} "
                         f"(a finished {updates:,}-update run)")
            yield kind, int(seed), rows


def load(data):
    """{kind: {seed: (block means per 3000 updates, means per 1000 updates or None)}}."""
    runs = {}
    for kind, seed, rows in curves(data, 30000):
        blocks = [sum(rows[i:i + 30]) / 30 for i in range(0, 300, 30)]
        thousands = [sum(rows[i:i + 10]) / 10 for i in range(0, 300, 10)]
        runs.setdefault(kind, {})[seed] = (blocks, thousands)
    first = os.path.join(data, "seed-1-blocks.csv")
    if os.path.exists(first):
        for r in csv.DictReader(open(first)):
            blocks = [float(r[f"b{i}"]) for i in range(1, 11)]
            runs.setdefault(r["kind"], {})[int(r["seed"])] = (blocks, None)
    for kind in runs:
        if kind not in KINDS:
            sys.exit(f"{data}: unknown kind {kind!r}; expected one of {KINDS}")
    return runs


def svg(runs, path):
    w, h, left, top, pw, ph = 900, 530, 70, 50, 640, 420
    ymax = 225.0
    x = lambda u: left + pw * u / 30000
    y = lambda r: top + ph * (1 - r / ymax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="15">maze (configs/maze.toml), 30,000 updates: reward per episode</text>',
           f'<text x="{left}" y="34">lines: a run\'s means over 1000 updates; dots: seed 1, means over 3000</text>']
    for r in range(0, int(ymax) + 1, 25):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(r):.1f}" y2="{y(r):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y(r) + 4:.1f}" text-anchor="end">{r}</text>')
    for u in range(0, 30001, 5000):
        out.append(f'<text x="{x(u):.1f}" y="{top + ph + 18}" text-anchor="middle">{u}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">update</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
    for k, kind in enumerate(KINDS):
        if kind not in runs:
            continue
        colour = COLOURS[k]
        for seed, (blocks, thousands) in sorted(runs[kind].items()):
            if thousands is not None:
                pts = " ".join(f"{x(500 + 1000 * i):.1f},{y(v):.1f}" for i, v in enumerate(thousands))
                out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
            else:
                for i, v in enumerate(blocks):
                    out.append(f'<circle cx="{x(1500 + 3000 * i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}"/>')
        ly = top + 20 + 20 * k
        out.append(f'<line x1="{left + pw + 20}" x2="{left + pw + 45}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text x="{left + pw + 52}" y="{ly + 4}">{kind} ({len(runs[kind])} seed{"s" if len(runs[kind]) > 1 else ""})</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def main():
    args = sys.argv[1:]
    out_svg = None
    if "--svg" in args:
        i = args.index("--svg")
        out_svg = args[i + 1]
        del args[i:i + 2]
    data = args[0] if args else "docs/data/maze-30k"
    runs = load(data)
    kinds = [k for k in KINDS if k in runs]
    finals = {k: [runs[k][s][0][-1] for s in sorted(runs[k])] for k in kinds}
    print("| kind | seeds | final reward per seed (last 3000 updates) | median [IQR] |")
    print("|---|---|---|---|")
    for k in kinds:
        v = finals[k]
        seeds = ", ".join(str(s) for s in sorted(runs[k]))
        print(f"| {k} | {seeds} | {', '.join(f'{x:.1f}' for x in v)} | "
              f"{quantile(v, 0.5):.1f} [{quantile(v, 0.25):.1f}, {quantile(v, 0.75):.1f}] |")
    print("\nMean reward per episode over each block of 3000 updates, median over seeds:\n")
    print("| kind | " + " | ".join(f"{i * 3}-{i * 3 + 3}k" for i in range(10)) + " |")
    print("|---|" + "---:|" * 10)
    for k in kinds:
        meds = [quantile([runs[k][s][0][i] for s in runs[k]], 0.5) for i in range(10)]
        print(f"| {k} | " + " | ".join(f"{m:.1f}" for m in meds) + " |")
    print("\nExact two-sided rank-sum tests on the final rewards:\n")
    print("| kinds | U | p |\n|---|---:|---:|")
    for a, b in itertools.combinations(kinds, 2):
        u, p = rank_sum(finals[a], finals[b])
        print(f"| {a} vs {b} | {u:g} | {p:.3f} |")
    if out_svg:
        svg(runs, out_svg)
        print(f"\nwrote {out_svg}")


if __name__ == "__main__":
    main()
