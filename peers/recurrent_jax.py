#!/usr/bin/env python3
"""bohp's JAX peer for the recurrent plastic network (differentiable plasticity, 2018) on
binary pattern memorisation: the network, episodes, loss and Adam settings of
`recurrent_torch.py` and bohp's memorisation configs, written as a performance-minded JAX user
would: one `jax.jit`-compiled update (episode generation with `jax.random`, the episode
unrolled by `lax.scan` with the batch vectorised, `value_and_grad`, optax Adam).

    y(t) = tanh( y(t-1) · (W + α ⊙ H(t-1)) + u(t) )
    H(t) = (1 - η) · H(t-1) + η · y(t-1)ᵀ y(t)          y(0) = 0, H(0) = 0; η learned

`--impl autograd` keeps what reverse mode needs of every step (the traces: `T × B × N²`
numbers); `--impl checkpoint` wraps the step in `jax.checkpoint`, so that only the carried
state is kept and the step's intermediates are recomputed in the backward pass.

`--check` compares `jax.grad` with central finite differences in f64 on a small network
(N = 12, every entry of W, α and η) and exits 1 above a relative error of 1e-6.

Timing: the first call (tracing, XLA compilation) is reported apart as `# compile time S s`;
then `--warmup` untimed updates and `--steps` timed ones, each waited for; the last line is
`# RESULT N=.. batch=.. impl=..: median s/update S => E s/episode, R episodes/s; peak RSS M MiB`.
"""
import argparse
import os
import statistics
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_common import cores, gradient_error, rss_mib, start  # noqa: E402


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1000, help="pattern bits = neurons N")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed updates")
    ap.add_argument("--warmup", type=int, default=1, help="untimed updates first (after compilation)")
    ap.add_argument("--impl", choices=["autograd", "checkpoint"], default="autograd")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--nbpatterns", type=int, default=5)
    ap.add_argument("--prescycles", type=int, default=2)
    ap.add_argument("--prestime", type=int, default=6)
    ap.add_argument("--interpresdelay", type=int, default=4)
    ap.add_argument("--prestimetest", type=int, default=6)
    ap.add_argument("--input-gain", type=float, default=20.0)
    return ap


ARGS = start(parser())

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402


def episodes(key, args, n, batch, dtype):
    """Inputs [T, B, N] and the probed pattern [B, N]."""
    nb, cycles = args.nbpatterns, args.prescycles
    block = args.prestime + args.interpresdelay
    kp, ko, kq, ke = jax.random.split(key, 4)
    patterns = jax.random.bernoulli(kp, 0.5, (batch, nb, n)).astype(dtype) * 2 - 1
    # Each cycle shows the patterns in its own random order.
    order = jax.vmap(lambda k: jax.random.permutation(k, nb))(jax.random.split(ko, batch * cycles))
    order = order.reshape(batch, cycles * nb)
    shown = jnp.take_along_axis(patterns, order[:, :, None], axis=1)  # [B, slots, N]
    on = (jnp.arange(block) < args.prestime).astype(dtype)  # [block]
    u = shown.transpose(1, 0, 2)[:, None] * on[None, :, None, None] * args.input_gain
    u = u.reshape(cycles * nb * block, batch, n)
    probe = jax.random.randint(kq, (batch,), 0, nb)
    target = patterns[jnp.arange(batch), probe]  # [B, N]
    # Half the probe's bits erased: a random half of the positions.
    ranks = jnp.argsort(jax.random.uniform(ke, (batch, n)), axis=1)
    kept = (ranks >= n // 2).astype(dtype)
    cue = target * kept * args.input_gain
    u = jnp.concatenate([u, jnp.broadcast_to(cue[None], (args.prestimetest, batch, n))])
    return u, target


def loss_fn(p, u, target, remat):
    batch, n = u.shape[1], u.shape[2]

    def step(carry, ut):
        y, h = carry
        # y(t-1)·(W + α⊙H) without forming the B × N × N sum.
        new = jnp.tanh(y @ p["w"] + jnp.einsum("bi,bij->bj", y, p["alpha"] * h) + ut)
        h = (1 - p["eta"]) * h + p["eta"] * y[:, :, None] * new[:, None, :]
        return (new, h), None

    if remat:
        step = jax.checkpoint(step)
    zeros = (jnp.zeros((batch, n), u.dtype), jnp.zeros((batch, n, n), u.dtype))
    (y, _), _ = lax.scan(step, zeros, u)
    return jnp.mean(jnp.sum((y - target) ** 2, axis=1))


def init(key, n, dtype):
    kw, ka = jax.random.split(key)
    return {
        "w": (0.01 * jax.random.normal(kw, (n, n))).astype(dtype),
        "alpha": (0.01 * jax.random.normal(ka, (n, n))).astype(dtype),
        "eta": jnp.asarray(0.01, dtype),
    }


def check():
    """jax.grad against central differences in f64, every parameter entry of a small network."""
    n, dtype = 12, jnp.float64
    p = init(jax.random.PRNGKey(ARGS.seed), n, dtype)
    # Gain 1 (not 20) keeps tanh off saturation, so the differences see real gradients.
    args = argparse.Namespace(**{**vars(ARGS), "input_gain": 1.0})
    u, target = episodes(jax.random.PRNGKey(ARGS.seed + 1), args, n, 2, dtype)
    f = jax.jit(lambda q: loss_fn(q, u, target, False))
    grads = jax.grad(lambda q: loss_fn(q, u, target, ARGS.impl == "checkpoint"))(p)
    # Measured against the largest gradient entry; the differences' rounding is about 1e-12 here.
    worst, entries = gradient_error(f, grads, p)
    ok = worst < 1e-6
    print(f"# gradient check N={n} impl={ARGS.impl}: jax.grad vs central differences over "
          f"{entries} entries, max |error| / max |gradient| {worst:.2e}: {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def main():
    if ARGS.check:
        return check()
    n, batch = ARGS.size, ARGS.batch
    key = jax.random.PRNGKey(ARGS.seed)
    key, sub = jax.random.split(key)
    params = init(sub, n, jnp.float32)
    opt = optax.adam(ARGS.lr)
    opt_state = opt.init(params)
    remat = ARGS.impl == "checkpoint"

    def update(params, opt_state, key):
        key, sub = jax.random.split(key)
        u, target = episodes(sub, ARGS, n, batch, jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(params, u, target, remat)
        changes, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state, key, loss

    update = jax.jit(update, donate_argnums=(0, 1, 2))
    print(f"# bohp peer: N={n} batch={batch} impl={ARGS.impl} updates={ARGS.steps} warmup={ARGS.warmup} "
          f"threads={ARGS.threads} jax={jax.__version__} cores={cores()} XLA_FLAGS='{os.environ['XLA_FLAGS']}'", flush=True)
    start = time.perf_counter()
    params, opt_state, key, loss = update(params, opt_state, key)
    loss.block_until_ready()
    print(f"# compile time {time.perf_counter() - start:.3f} s", flush=True)
    times = []
    for k in range(ARGS.warmup + ARGS.steps):
        start = time.perf_counter()
        params, opt_state, key, loss = update(params, opt_state, key)
        loss.block_until_ready()
        if k >= ARGS.warmup:
            times.append(time.perf_counter() - start)
        if ARGS.print_every and k % ARGS.print_every == 0:
            print(f"update {k} loss {float(loss):.3f} eta {float(params['eta']):.4f}", flush=True)
    med = statistics.median(times)
    print(f"# RESULT N={n} batch={batch} impl={ARGS.impl}: median s/update {med:.4f} "
          f"=> {med / batch:.5f} s/episode, {batch / med:.3f} episodes/s; "
          f"peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
