#!/usr/bin/env python3
"""bohp's JAX peer for the single plastic layer (Miconi 2016) and its three tasks.

The same networks, episodes, losses and Adam settings as `bohp_torch.py` and bohp's shipped
configs (configs/completion.toml, one-shot.toml, reversal.toml), written the way a
performance-minded JAX user would: one `jax.jit`-compiled update (episode generation with
`jax.random`, the episode unrolled by `lax.scan` with the batch vectorised, `value_and_grad`,
optax Adam), its buffers donated, so no Python runs inside an update.

    y(t) = tanh( x(t) · (w + α ⊙ H(t-1)) + b )        row vectors; w, α: [n_in, n_out]
    H(t) = (1 - γ) · H(t-1) + γ · x(t)ᵀ y(t)           H(0) = 0 in every episode

`--check` compares `jax.grad` with central finite differences in f64 on one batch of episodes
(every parameter entry) and exits 1 above a relative error of 1e-6.

Timing: the first call (tracing and XLA compilation) is reported apart as `# compile time`;
then `--warmup` untimed updates, then `--episodes` timed whole updates (episode generation,
forward, backward, Adam step), reported on the last line as
`# train time S s for U updates x batch B: R updates/s, E episodes/s`. `--threads N` sets XLA's
CPU thread count (set before jax is imported).
"""
import argparse
import os
import sys
import time

BITS = 8
LABELS = 2
# Steps at the start (and after the reversal) whose inputs carry the label bits.
LABELLED = 2
# Per task: trace rate γ, hidden units (labelled tasks), initial std, Adam learning rate, steps.
TASKS = {
    "completion": dict(gamma=0.5, hidden=BITS, init_std=0.1, lr=0.03, steps=2),
    "oneshot": dict(gamma=0.02, hidden=2, init_std=0.1, lr=0.01, steps=20),
    "reversal": dict(gamma=0.02, hidden=4, init_std=0.3, lr=0.01, steps=20),
}


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_common import cores, finite_differences, start  # noqa: E402


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="oneshot")
    ap.add_argument("--episodes", type=int, default=1000, help="timed updates")
    ap.add_argument("--warmup", type=int, default=20, help="untimed updates first (after compilation)")
    ap.add_argument("--batch", type=int, default=1, help="independent episodes per update")
    return ap


ARGS = start(parser())

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402


def signs(key, shape):
    """Random ±1 entries."""
    return jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32) * 2 - 1


def completion_batch(key, batch):
    """Inputs [2, B, 8] and the target pattern [B, 8]."""
    k1, k2 = jax.random.split(key)
    pattern = signs(k1, (batch, BITS))
    kept = jax.random.randint(k2, (batch,), 0, BITS)
    cue = pattern * jax.nn.one_hot(kept, BITS)
    return jnp.stack([pattern, cue]), pattern


def labelled_batch(key, batch, steps, reversal):
    """Inputs [T, B, 10], the class of each step [T] and which steps are scored [T]."""
    ka, kb = jax.random.split(key)
    a = signs(ka, (batch, BITS))

    # B is drawn again wherever it equals A (as the torch peer does).
    def redraw(state):
        key, b = state
        key, sub = jax.random.split(key)
        same = jnp.all(a == b, axis=1)
        return key, jnp.where(same[:, None], signs(sub, (batch, BITS)), b)

    kb, sub = jax.random.split(kb)
    _, b = lax.while_loop(lambda s: jnp.any(jnp.all(a == s[1], axis=1)), redraw, (kb, signs(sub, (batch, BITS))))
    t = jnp.arange(steps)
    cls = (t % 2 == 0).astype(jnp.int32)  # class 1 on even steps, 0 on odd ones
    shows_a = t % 2 == 0
    labelled = t < LABELLED
    if reversal:
        swap = steps // 2
        shows_a = shows_a ^ (t >= swap)
        labelled = labelled | ((t >= swap) & (t < swap + LABELLED))
    patterns = jnp.where(shows_a[:, None, None], a[None], b[None])  # [T, B, 8]
    label_bits = jax.nn.one_hot(cls, LABELS) * labelled[:, None]
    x = jnp.concatenate([patterns, jnp.broadcast_to(label_bits[:, None, :], (steps, batch, LABELS))], axis=2)
    return x, cls, ~labelled


def init(key, n_in, n_out, classes, init_std):
    ks = jax.random.split(key, 5)
    p = {
        "w": init_std * jax.random.normal(ks[0], (n_in, n_out)),
        "alpha": init_std * jax.random.normal(ks[1], (n_in, n_out)),
        "b": init_std * jax.random.normal(ks[2], (n_out,)),
    }
    if classes:
        p["v"] = jnp.abs(init_std * jax.random.normal(ks[3], (n_out, classes)))
        p["c"] = init_std * jax.random.normal(ks[4], (classes,))
    return p


def forward(p, x, gamma):
    """x: [T, B, n_in] -> tanh outputs [T, B, n_out]; the trace H is [B, n_in, n_out]."""
    batch, n_in = x.shape[1], x.shape[2]

    def step(h, xt):
        y = jnp.tanh(xt @ p["w"] + jnp.einsum("bi,bio->bo", xt, p["alpha"] * h) + p["b"])
        h = (1 - gamma) * h + gamma * xt[:, :, None] * y[:, None, :]
        return h, y

    h0 = jnp.zeros((batch, n_in, p["w"].shape[1]), x.dtype)
    return lax.scan(step, h0, x)[1]


def loss_fn(p, episode, task, gamma):
    if task == "completion":
        x, pattern = episode
        y = forward(p, x, gamma)[-1]
        return jnp.mean(jnp.sum((y - pattern) ** 2, axis=1))
    x, cls, scored = episode
    logits = forward(p, x, gamma) @ p["v"] + p["c"]  # [T, B, classes]
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.broadcast_to(cls[:, None, None], logits.shape[:2] + (1,)), axis=2)[..., 0]
    return jnp.sum(ce * scored[:, None]) / (jnp.sum(scored) * x.shape[1])


def episodes(key, task, batch, steps):
    if task == "completion":
        return completion_batch(key, batch)
    return labelled_batch(key, batch, steps, task == "reversal")


def check(task, s):
    """jax.grad against central differences, f64, every parameter entry."""
    n_in = BITS if task == "completion" else BITS + LABELS
    classes = 0 if task == "completion" else LABELS
    p = init(jax.random.PRNGKey(ARGS.seed), n_in, s["hidden"], classes, s["init_std"])
    ep = episodes(jax.random.PRNGKey(ARGS.seed + 1), task, 4, s["steps"])
    ep = tuple(e.astype(jnp.float64) if e.dtype == jnp.float32 else e for e in ep)
    f = jax.jit(lambda q: loss_fn(q, ep, task, s["gamma"]))
    grads = jax.grad(lambda q: loss_fn(q, ep, task, s["gamma"]))(p)
    pairs = finite_differences(f, grads, p)
    worst = max(abs(fd - g) / max(abs(fd), abs(g), 1e-3) for fd, g in pairs)
    ok = worst < 1e-6
    print(f"# gradient check {task}: jax.grad vs central differences, max relative error {worst:.2e}: "
          f"{'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def main():
    task, s = ARGS.task, TASKS[ARGS.task]
    if ARGS.check:
        return check(task, s)
    n_in = BITS if task == "completion" else BITS + LABELS
    classes = 0 if task == "completion" else LABELS
    key = jax.random.PRNGKey(ARGS.seed)
    key, sub = jax.random.split(key)
    params = init(sub, n_in, s["hidden"], classes, s["init_std"])
    opt = optax.adam(s["lr"], b1=0.9, b2=0.9)
    opt_state = opt.init(params)

    def update(params, opt_state, key):
        key, sub = jax.random.split(key)
        ep = episodes(sub, task, ARGS.batch, s["steps"])
        loss, grads = jax.value_and_grad(loss_fn)(params, ep, task, s["gamma"])
        changes, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state, key, loss

    update = jax.jit(update, donate_argnums=(0, 1, 2))
    print(f"# bohp peer: task={task} batch={ARGS.batch} updates={ARGS.episodes} warmup={ARGS.warmup} "
          f"threads={ARGS.threads} jax={jax.__version__} cores={cores()} XLA_FLAGS='{os.environ['XLA_FLAGS']}'")
    start = time.perf_counter()
    params, opt_state, key, loss = update(params, opt_state, key)
    loss.block_until_ready()
    print(f"# compile time {time.perf_counter() - start:.3f} s")
    for _ in range(ARGS.warmup):
        params, opt_state, key, loss = update(params, opt_state, key)
    loss.block_until_ready()
    start = time.perf_counter()
    for k in range(ARGS.episodes):
        params, opt_state, key, loss = update(params, opt_state, key)
        if ARGS.print_every and k % ARGS.print_every == 0:
            print(f"update {k} loss {float(loss):.5f}")
    loss.block_until_ready()
    seconds = time.perf_counter() - start
    print(f"# train time {seconds:.3f} s for {ARGS.episodes} updates x batch {ARGS.batch}: "
          f"{ARGS.episodes / seconds:.1f} updates/s, {ARGS.episodes * ARGS.batch / seconds:.1f} episodes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
