import csv, sys, os
# usage: tools/blocks.py RUN_DIR...: prints each run's mean reward per 3000-update block and over its last
# 3000 updates; with OUTDIR set, also writes its 100-update means to $OUTDIR/<kind>-<seed>.csv
# (the long maze runs' curves kept in docs/data/, since run directories are not kept).
out = os.environ.get("OUTDIR")
for d in sys.argv[1:]:
    r = [float(x['reward']) for x in csv.DictReader(open(os.path.join(d, 'metrics.csv')))]
    blocks = [sum(r[i:i+3000])/len(r[i:i+3000]) for i in range(0, len(r), 3000)]
    kind, seed = d.rstrip('/').split('/')[-2:]
    print(kind, seed, len(r), ' '.join(f'{b:.1f}' for b in blocks), f'last3000 {sum(r[-3000:])/3000:.2f}')
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f'{kind}-{seed}.csv'), 'w') as f:
            f.write('first_update,mean_reward_per_episode\n')
            for i in range(0, len(r), 100):
                f.write(f'{i},{sum(r[i:i+100])/len(r[i:i+100]):.4f}\n')
