#!/usr/bin/env bash
# Before/after check for a restructuring: the same runs (the three single-layer tasks by their
# default engine, autodiff, and two of them by the fused engine, the
# modulated α ≥ 0 reversal, memorisation-50 (fused, and 20 updates by autodiff), a small maze
# (fused), the published maze and cue (retroactive, fused), the bandit (autodiff),
# a short Omniglot run) by two bohp binaries, compared: metrics.csv and summary.json without
# their timing columns, `eval --json` and the npz export byte for byte. model.bpk is not
# compared: it holds burn's random parameter ids, which differ between two runs of one binary.
#
#   OLD=path/to/old/bohp NEW=target/release/bohp tools/before-after.sh [OUT_DIR]
#
# Run from the repository root (the Omniglot run reads ../shared/data/omniglot).
set -u
OLD=${OLD:?set OLD to the bohp binary before the change}
NEW=${NEW:-target/release/bohp}
OUT=${1:-/tmp/before-after}; rm -rf "$OUT"; mkdir -p "$OUT"
runs=(
  "reversal configs/reversal.toml --episodes 2000"
  "one-shot configs/one-shot.toml --episodes 1000"
  "completion configs/completion.toml --episodes 1000"
  "completion-fused configs/completion.toml --episodes 1000 --engine fused"
  "one-shot-fused configs/one-shot.toml --episodes 1000 --engine fused"
  "rev-modulated configs/reversal-nonnegative-modulated.toml --episodes 1000"
  "memorisation-50 configs/memorisation-50.toml"
  "memorisation-autodiff configs/memorisation-50.toml --engine autodiff --episodes 20"
  "maze configs/maze-small-hebb.toml --episodes 30"
  "maze-retroactive configs/maze.toml --episodes 20"
  "cue-retroactive configs/cue.toml --episodes 20"
  "bandit-autodiff configs/bandit.toml --episodes 30"
  "omniglot configs/omniglot-small1.toml --episodes 30"
)
for r in "${runs[@]}"; do
  set -- $r; name=$1; shift
  for side in old new; do
    bin=$OLD; [ $side = new ] && bin=$NEW
    start=$(date +%s.%N)
    $bin --quiet train "$@" --out $OUT/$side-$name > $OUT/$side-$name.train.txt 2>&1 || echo "$side $name train failed"
    end=$(date +%s.%N)
    echo "$side $name train $(echo "$end - $start" | bc) s"
    $bin eval $OUT/$side-$name --episodes 20 --json > $OUT/$side-$name.eval.json 2>&1 || echo "$side $name eval failed"
    $bin export $OUT/$side-$name --format npz --out $OUT/$side-$name.npz > /dev/null 2>&1 || echo "$side $name export failed"
  done
  # Timing columns and fields removed before comparing.
  strip() { python3 - "$1" <<'PY'
import csv, json, sys
p = sys.argv[1]
if p.endswith('.csv'):
    rows = list(csv.reader(open(p)))
    drop = [i for i, h in enumerate(rows[0]) if 'second' in h]
    for r in rows: print(','.join(v for i, v in enumerate(r) if i not in drop))
else:
    d = json.load(open(p))
    for k in [k for k in d if 'second' in k or 'rss' in k]: d.pop(k)
    print(json.dumps(d, sort_keys=True))
PY
  }
  same=1
  for f in metrics.csv summary.json; do
    [ "$(strip $OUT/old-$name/$f)" == "$(strip $OUT/new-$name/$f)" ] || { echo "  $name: $f differs"; same=0; }
  done
  # model.bpk holds burn's random parameter ids (two runs of one binary differ there);
  # the npz export compares the parameters themselves.
  cmp -s $OUT/old-$name.eval.json $OUT/new-$name.eval.json || { echo "  $name: eval differs"; same=0; }
  cmp -s $OUT/old-$name.npz $OUT/new-$name.npz || { echo "  $name: export differs"; same=0; }
  echo "$name: identical=$same; last row: $(tail -1 $OUT/new-$name/metrics.csv)"
done
