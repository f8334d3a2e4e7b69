#!/usr/bin/env python3
"""bohp's JAX peer for neuromodulated plasticity (backpropamine, 2019): the recurrent
actor-critic networks, environments, A2C loss and Adam settings of `backpropamine_torch.py`
and bohp's configs/maze.toml and configs/cue.toml, written as a performance-minded JAX user
would: one `jax.jit`-compiled update holding the environments (in `jax.numpy`, vectorised over
the batch), the episode unrolled by `lax.scan` with action sampling inside it,
`value_and_grad`, gradient-norm clipping and Adam (optax); no Python runs inside an update.

Row vectors, pre = h(t-1), post = h(t):

    h(t) = tanh( x(t)·W_in + b + h(t-1)·(W + α ⊙ H) )
    π(t) = softmax(h(t)·W_π + b_π),  V(t) = h(t)·w_V + b_V,  M(t) = tanh(h(t)·w_M + b_M)
    rnn      : no α, no H
    plastic  : H ← clip(H + η·preᵀpost, ±1)                                   learned η
    modplast : H ← clip(H + M(t)·preᵀpost, ±1)
    modul    : H ← clip(H + M(t)·E, ±1) with the old E, then E ← (1-η)·E + η·preᵀpost

A2C: R_t = r_t + 0.9·R_{t+1}; loss = Σ_t mean_b[ -log π(a_t)·(R_t - V_t)_detached
+ 0.1·(R_t - V_t)² + c·Σ_a p_a² ], gradient-norm clipping (per tensor, as bohp's configs;
`--clip-scope global` for all parameters together, as the PyTorch peer), Adam (lr 1e-4).

`--impl autograd` keeps what reverse mode needs of every step (several `B × N × N` arrays per
step); `--impl checkpoint` wraps the step in `jax.checkpoint`, keeping only the carried state.

`--check` compares `jax.grad` with central finite differences in f64 on a small network
(N = 6, batch 3, 24 steps, a 5 × 5 maze, every parameter entry). The A2C gradient treats the advantage in the
policy term as a constant, so the differences are taken of the loss with that advantage held
at its value at the unperturbed parameters (the sampled actions, drawn by the same keys, do not
change under a 1e-6 perturbation). Exits 1 above a relative error of 1e-6.

Timing: the first call (tracing, XLA compilation) is reported apart as `# compile time S s`;
then `--warmup` untimed updates and `--steps` timed ones, each waited for; the last line is
`# RESULT task=.. type=.. batch=..: median s/update S => E s/episode, R episodes/s; peak RSS M MiB`.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_common import cores, gradient_error, rss_mib, start  # noqa: E402

# Per task: exploration coefficient and gradient-norm clip of bohp's configs.
TASKS = {"maze": dict(exploration=0.03, clip_norm=4.0), "cue": dict(exploration=0.1, clip_norm=2.0)}
SHARED_INPUTS = 3  # bias, t/T, previous reward (then the previous action, one-hot)
CUE_BITS = 20


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="maze")
    ap.add_argument("--type", choices=["rnn", "plastic", "modplast", "modul"], default="modul")
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--eplen", type=int, default=200, help="steps per episode")
    ap.add_argument("--maze-size", type=int, default=11)
    ap.add_argument("--impl", choices=["autograd", "checkpoint"], default="autograd")
    ap.add_argument("--steps", type=int, default=5, help="timed updates")
    ap.add_argument("--warmup", type=int, default=1, help="untimed updates first (after compilation)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clip-scope", choices=["tensor", "global"], default="tensor",
                    help="clip each parameter's gradient to the norm (bohp's configs), or all together")
    return ap


ARGS = start(parser())

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402


class Maze:
    """L × L grid, border walls and pillars where row and column are both even (none at the
    centre); the agent starts at the centre; reaching the reward cell pays +10 and teleports it
    to a random free cell other than the reward's."""

    actions = 4
    inputs = 9

    def __init__(self, side):
        r = np.arange(side)
        border = (r[:, None] == 0) | (r[:, None] == side - 1) | (r[None] == 0) | (r[None] == side - 1)
        wall = border | ((r[:, None] % 2 == 0) & (r[None] % 2 == 0))
        self.centre = side // 2
        wall[self.centre, self.centre] = False
        free = np.argwhere(~wall)
        self.centre_index = int(np.flatnonzero((free == self.centre).all(1))[0])
        self.wall = jnp.asarray(wall)
        self.free = jnp.asarray(free)
        self.moves = jnp.asarray([[-1, 0], [1, 0], [0, -1], [0, 1]])
        self.offsets = jnp.asarray(np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-1, 2), indexing="ij"), -1).reshape(9, 2))

    def other_free(self, key, excluded):
        """A uniform free cell index other than `excluded` (per row)."""
        i = jax.random.randint(key, excluded.shape, 0, self.free.shape[0] - 1)
        return i + (i >= excluded)

    def reset(self, key, batch, steps):
        reward = self.other_free(key, jnp.full((batch,), self.centre_index))
        pos = jnp.broadcast_to(jnp.asarray([self.centre, self.centre]), (batch, 2))
        return (pos, reward), None

    def observe(self, state, xs, dtype):
        pos, _ = state
        cells = pos[:, None, :] + self.offsets[None]
        return self.wall[cells[..., 0], cells[..., 1]].astype(dtype)

    def step(self, state, action, xs, key, dtype):
        pos, reward_index = state
        target = pos + self.moves[action]
        blocked = self.wall[target[:, 0], target[:, 1]]
        pos = jnp.where(blocked[:, None], pos, target)
        hit = (pos == self.free[reward_index]).all(1)
        teleport = self.free[self.other_free(key, reward_index)]
        pos = jnp.where(hit[:, None], teleport, pos)
        return (pos, reward_index), hit.astype(dtype) * 10.0


class Cue:
    """Four random ±1 cues of 20 bits, one the target; trials of 5-8 steps: blank, two distinct
    cues at distinct middle steps, Go on the next-to-last step, blank. At Go, action 1 pays +1
    when the target was shown, action 0 when it was not, anything else -1. The per-step plan
    (cue shown, Go, target shown) is drawn for the whole episode at reset and scanned over."""

    actions = 2
    inputs = CUE_BITS + 1

    def reset(self, key, batch, steps):
        kc, kl, ks, ka, kb = jax.random.split(key, 5)
        cues = jax.random.bernoulli(kc, 0.5, (batch, 4, CUE_BITS)) * 2 - 1
        trials = steps // 5 + 1
        length = jax.random.randint(kl, (batch, trials), 5, 9)
        shown = jax.vmap(lambda k: jax.random.permutation(k, 4)[:2])(jax.random.split(ks, batch * trials))
        shown = shown.reshape(batch, trials, 2)
        # Two distinct steps among 1 .. length-3.
        first = jax.random.randint(ka, (batch, trials), 0, length - 3)
        second = jax.random.randint(kb, (batch, trials), 0, length - 4)
        second = second + (second >= first)
        at = jnp.stack([first, second], -1) + 1
        start = jnp.cumsum(length, 1) - length
        t = jnp.arange(steps)
        trial = jax.vmap(lambda s: jnp.searchsorted(s, t, side="right") - 1)(start)  # [B, T]
        offset = t[None] - jnp.take_along_axis(start, trial, 1)
        pick = lambda a: jnp.take_along_axis(a, trial, 1)  # noqa: E731
        at_t = jnp.take_along_axis(at, trial[..., None], 1)
        shown_t = jnp.take_along_axis(shown, trial[..., None], 1)
        cue_at = jnp.where(offset == at_t[..., 0], shown_t[..., 0], jnp.where(offset == at_t[..., 1], shown_t[..., 1], -1))
        go_at = offset == pick(length) - 2
        target_at = (shown_t == 0).any(-1)
        return cues, (cue_at.T, go_at.T, target_at.T)

    def observe(self, cues, xs, dtype):
        cue, go, _ = xs
        rows = jnp.arange(cue.shape[0])
        shown = cues[rows, jnp.maximum(cue, 0)].astype(dtype) * (cue >= 0)[:, None]
        return jnp.concatenate([shown, go[:, None].astype(dtype)], 1)

    def step(self, cues, action, xs, key, dtype):
        _, go, target = xs
        right = action == target.astype(action.dtype)
        return cues, go.astype(dtype) * (right.astype(dtype) * 2 - 1)


def make_env(args):
    return Maze(args.maze_size) if args.task == "maze" else Cue()


def init(key, inputs, hidden, actions, kind, dtype):
    """As the published code and the PyTorch peer: W, α ~ 0.001·U(0, 1), the linear layers
    ~ U(±1/√fan-in), η = 0.01.
    Each head is its own tensor (bohp's groups), as the per-tensor gradient clip sees them."""
    k = jax.random.split(key, 10)
    lin = lambda kk, shape, fan: jax.random.uniform(kk, shape, dtype, -1, 1) / np.sqrt(fan)  # noqa: E731
    p = {
        "w_in": lin(k[0], (inputs, hidden), inputs),
        "b_in": lin(k[1], (hidden,), inputs),
        "w": 0.001 * jax.random.uniform(k[2], (hidden, hidden), dtype),
        "w_pi": lin(k[3], (hidden, actions), hidden),
        "b_pi": lin(k[4], (actions,), hidden),
        "w_v": lin(k[5], (hidden, 1), hidden),
        "b_v": lin(k[6], (1,), hidden),
    }
    if kind in ("modplast", "modul"):
        p["w_m"] = lin(k[7], (hidden, 1), hidden)
        p["b_m"] = lin(k[8], (1,), hidden)
    if kind != "rnn":
        p["alpha"] = 0.001 * jax.random.uniform(k[9], (hidden, hidden), dtype)
    if kind in ("plastic", "modul"):
        p["eta"] = jnp.asarray(0.01, dtype)
    return p


def rollout_loss(p, key, env, args, kind, remat, batch, dtype, fixed_values=None):
    """The A2C loss of one batch of episodes, and (values, total reward per episode).
    `fixed_values`: the values the detached advantage uses (the check's constant)."""
    steps, hidden, actions = args.eplen, p["w"].shape[0], env.actions
    kr, ka, ke = jax.random.split(key, 3)
    state, plan = env.reset(kr, batch, steps)
    xs = (jnp.arange(steps), jax.random.split(ka, steps), jax.random.split(ke, steps), plan)
    # The heads side by side: one product per step for the logits, V and M.
    heads = [p["w_pi"], p["w_v"]] + ([p["w_m"]] if "w_m" in p else [])
    w_out = jnp.concatenate(heads, 1)
    b_out = jnp.concatenate([p["b_pi"], p["b_v"]] + ([p["b_m"]] if "b_m" in p else []))

    def step(carry, x):
        h, trace, elig, prev_r, prev_a, state = carry
        t, k_act, k_env, plan_t = x
        obs = env.observe(state, plan_t, dtype)
        shared = jnp.stack([jnp.ones(batch, dtype), jnp.full((batch,), t / steps, dtype), prev_r], 1)
        inp = jnp.concatenate([obs, shared, prev_a], 1)
        pre = inp @ p["w_in"] + p["b_in"] + h @ p["w"]
        if kind != "rnn":
            # h(t-1)·(α ⊙ H) without forming the B × N × N sum W + α ⊙ H.
            pre = pre + jnp.einsum("bi,bij->bj", h, p["alpha"] * trace)
        h_new = jnp.tanh(pre)
        out = h_new @ w_out + b_out
        logits, value = out[:, :actions], out[:, actions]
        if kind == "plastic":
            trace = jnp.clip(trace + (p["eta"] * h)[:, :, None] * h_new[:, None, :], -1.0, 1.0)
        elif kind == "modplast":
            m = jnp.tanh(out[:, -1])
            trace = jnp.clip(trace + (m[:, None] * h)[:, :, None] * h_new[:, None, :], -1.0, 1.0)
        elif kind == "modul":
            m = jnp.tanh(out[:, -1])
            trace = jnp.clip(trace + m[:, None, None] * elig, -1.0, 1.0)
            elig = (1 - p["eta"]) * elig + (p["eta"] * h)[:, :, None] * h_new[:, None, :]
        action = jax.random.categorical(k_act, lax.stop_gradient(logits))
        state, reward = env.step(state, action, plan_t, k_env, dtype)
        prev_a = jax.nn.one_hot(action, actions, dtype=dtype)
        return (h_new, trace, elig, reward, prev_a, state), (logits, value, action, reward)

    if remat:
        step = jax.checkpoint(step)
    square = (batch, hidden, hidden)
    plastic = kind != "rnn"
    carry = (
        jnp.zeros((batch, hidden), dtype),
        jnp.zeros(square if plastic else (batch, 0, 0), dtype),
        jnp.zeros(square if kind == "modul" else (batch, 0, 0), dtype),
        jnp.zeros(batch, dtype),
        jnp.zeros((batch, actions), dtype),
        state,
    )
    _, (logits, values, taken, rewards) = lax.scan(step, carry, xs)
    returns = lax.scan(lambda ret, r: (r + 0.9 * ret,) * 2, jnp.zeros(batch, dtype), rewards, reverse=True)[1]
    logp = jax.nn.log_softmax(logits, -1)
    logp_taken = jnp.take_along_axis(logp, taken[..., None], -1)[..., 0]
    advantage = returns - values
    baseline = values if fixed_values is None else fixed_values
    detached = lax.stop_gradient(returns - baseline)
    explore = jnp.sum(jnp.exp(logp) ** 2, -1)
    terms = -logp_taken * detached + 0.1 * advantage ** 2 + TASKS[args.task]["exploration"] * explore
    return jnp.sum(jnp.mean(terms, 1)), (values, jnp.mean(jnp.sum(rewards, 0)))


def sizes(env):
    return env.inputs + SHARED_INPUTS + env.actions, env.actions


def check():
    """jax.grad against central differences in f64, every parameter entry of a small network."""
    dtype, batch = jnp.float64, 3
    # A 5 × 5 maze (9 free cells), so that the rewards and teleports are exercised in 24 steps.
    args = argparse.Namespace(**{**vars(ARGS), "eplen": 24, "hidden": 6, "maze_size": 5})
    env = make_env(args)
    inputs, actions = sizes(env)
    p = init(jax.random.PRNGKey(ARGS.seed), inputs, args.hidden, actions, args.type, dtype)
    key = jax.random.PRNGKey(ARGS.seed + 1)
    remat = ARGS.impl == "checkpoint"
    (_, (values, reward)), grads = jax.value_and_grad(
        lambda q: rollout_loss(q, key, env, args, args.type, remat, batch, dtype), has_aux=True)(p)
    f = jax.jit(lambda q: rollout_loss(q, key, env, args, args.type, False, batch, dtype, values)[0])
    worst, entries = gradient_error(f, grads, p)
    ok = worst < 1e-6
    print(f"# gradient check task={args.task} type={args.type} N={args.hidden} impl={ARGS.impl} "
          f"(mean reward {float(reward):.2f}): jax.grad vs central differences over {entries} entries, "
          f"max |error| / max |gradient| {worst:.2e}: {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def main():
    if ARGS.check:
        return check()
    env = make_env(ARGS)
    inputs, actions = sizes(env)
    batch, kind, remat = ARGS.batch, ARGS.type, ARGS.impl == "checkpoint"
    key = jax.random.PRNGKey(ARGS.seed)
    key, sub = jax.random.split(key)
    params = init(sub, inputs, ARGS.hidden, actions, kind, jnp.float32)
    bound = TASKS[ARGS.task]["clip_norm"]
    if ARGS.clip_scope == "global":
        opt = optax.chain(optax.clip_by_global_norm(bound), optax.adam(ARGS.lr))
    else:
        # bohp's clip: each parameter tensor's gradient to norm `bound` on its own.
        def clip(grads):
            return jax.tree.map(lambda g: g * jnp.minimum(1.0, bound / (jnp.linalg.norm(g) + 1e-6)), grads)
        opt = optax.chain(optax.stateless(lambda g, _: clip(g)), optax.adam(ARGS.lr))
    opt_state = opt.init(params)

    def update(params, opt_state, key):
        key, sub = jax.random.split(key)
        (loss, (_, reward)), grads = jax.value_and_grad(rollout_loss, has_aux=True)(
            params, sub, env, ARGS, kind, remat, batch, jnp.float32)
        changes, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state, key, loss, reward

    update = jax.jit(update, donate_argnums=(0, 1, 2))
    print(f"# bohp peer: task={ARGS.task} type={kind} N={ARGS.hidden} batch={batch} steps/episode={ARGS.eplen} "
          f"impl={ARGS.impl} updates={ARGS.steps} warmup={ARGS.warmup} threads={ARGS.threads} "
          f"jax={jax.__version__} cores={cores()} XLA_FLAGS='{os.environ['XLA_FLAGS']}'", flush=True)
    start = time.perf_counter()
    params, opt_state, key, loss, reward = update(params, opt_state, key)
    loss.block_until_ready()
    print(f"# compile time {time.perf_counter() - start:.3f} s", flush=True)
    times = []
    for k in range(ARGS.warmup + ARGS.steps):
        start = time.perf_counter()
        params, opt_state, key, loss, reward = update(params, opt_state, key)
        loss.block_until_ready()
        if k >= ARGS.warmup:
            times.append(time.perf_counter() - start)
        if ARGS.print_every and k % ARGS.print_every == 0:
            print(f"update {k} loss {float(loss):.3f} reward {float(reward):.3f}", flush=True)
    med = statistics.median(times)
    print(f"# RESULT task={ARGS.task} type={kind} batch={batch}: median s/update {med:.4f} "
          f"=> {med / batch:.5f} s/episode, {batch / med:.3f} episodes/s; peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
