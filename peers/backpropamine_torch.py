#!/usr/bin/env python3
"""bohp's PyTorch peer for neuromodulated plasticity (backpropamine, 2019): recurrent
actor-critic networks trained by A2C on the grid maze and the cue-reward task.

Written for `bohp bench --peer-python` from the equations in docs/neuromodulation.md: the
networks, environments, A2C loss and Adam settings of bohp's configs/maze.toml and
configs/cue.toml, a batch of independent episodes per update, gradients by autograd
(backpropagation through the whole episode). Row vectors, pre = h(t-1), post = h(t):

    h(t) = tanh( x(t)·W_in + h(t-1)·(W + α ⊙ H) + b )
    π(t) = softmax(h(t)·W_π + b_π),  V(t) = h(t)·w_V + b_V,  M(t) = tanh(h(t)·w_M + b_M)
    rnn      : no α, no H
    plastic  : H ← clip(H + η·preᵀpost, ±1)                                   learned η
    modplast : H ← clip(H + M(t)·preᵀpost, ±1)
    modul    : H ← clip(H + M(t)·E, ±1) with the old E, then E ← (1-η)·E + η·preᵀpost

A2C: R_t = r_t + 0.9·R_{t+1}; loss = Σ_t mean_b[ -log π(a_t)·(R_t - V_t)_detached
+ 0.1·(R_t - V_t)² + c·Σ_a p_a² ], Adam (lr 1e-4), gradient-norm clipping.

Timing: `--warmup` untimed updates, then `--steps` timed whole updates (environment steps and
action sampling, forward, backward, Adam step); the last line is
`# RESULT task=.. type=.. batch=..: median s/update S => E s/episode, R episodes/s; peak RSS M MiB`.
"""
import argparse
import resource
import statistics
import time

import torch

# Per task: exploration coefficient and gradient-norm clip of bohp's configs.
TASKS = {"maze": dict(exploration=0.03, clip_norm=4.0), "cue": dict(exploration=0.1, clip_norm=2.0)}
SHARED_INPUTS = 3  # bias, t/T, previous reward (then the previous action, one-hot)


class Maze:
    """L × L grid, border walls and pillars where row and column are both even (none at the
    centre); the agent starts at the centre; reaching the reward cell pays +10 and teleports it to a random free
    cell other than the reward's."""

    actions = 4
    moves = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1]])

    def __init__(self, batch, side, steps, gen):
        self.batch, self.side, self.steps, self.gen = batch, side, steps, gen
        r = torch.arange(side)
        border = (r[:, None] == 0) | (r[:, None] == side - 1) | (r[None] == 0) | (r[None] == side - 1)
        self.wall = border | ((r[:, None] % 2 == 0) & (r[None] % 2 == 0))
        centre = side // 2
        # The agent starts at the centre, which never holds a pillar (sides 9, 13, ...).
        self.wall[centre, centre] = False
        self.free = (~self.wall).nonzero()
        self.pos = torch.tensor([[centre, centre]]).repeat(batch, 1)
        not_centre = self.free[(self.free != torch.tensor([centre, centre])).any(1)]
        self.reward = not_centre[torch.randint(0, len(not_centre), (batch,), generator=gen)]
        self.inputs = 9
        self.offsets = torch.stack(torch.meshgrid(torch.arange(-1, 2), torch.arange(-1, 2), indexing="ij"), -1).reshape(9, 2)

    def observe(self):
        cells = self.pos[:, None, :] + self.offsets[None]
        return self.wall[cells[..., 0], cells[..., 1]].float()

    def step(self, action, t):
        target = self.pos + self.moves[action]
        blocked = self.wall[target[:, 0], target[:, 1]]
        self.pos = torch.where(blocked[:, None], self.pos, target)
        hit = (self.pos == self.reward).all(1)
        reward = hit.float() * 10.0
        if not bool(hit.any()):
            return reward
        for b in hit.nonzero()[:, 0].tolist():
            others = self.free[(self.free != self.reward[b]).any(1)]
            self.pos[b] = others[int(torch.randint(0, len(others), (1,), generator=self.gen))]
        return reward


class Cue:
    """Four random ±1 cues of 20 bits, one the target; trials of 5-8 steps: blank, two distinct
    cues at distinct middle steps, Go on the next-to-last step, blank. At Go, action 1 pays +1
    when the target was shown, action 0 when it was not, anything else -1."""

    actions = 2
    bits = 20

    def __init__(self, batch, steps, gen):
        self.batch, self.steps, self.gen = batch, steps, gen
        self.cues = torch.randint(0, 2, (batch, 4, self.bits), generator=gen).float() * 2 - 1
        self.inputs = self.bits + 1
        plans = [self.trials() for _ in range(batch)]
        # Per step and episode: the cue shown (-1: none), Go, whether the target (cue 0) was shown.
        self.cue_at = torch.tensor([[p[t][0] for p in plans] for t in range(steps)])
        self.go_at = torch.tensor([[p[t][1] for p in plans] for t in range(steps)])
        self.target_at = torch.tensor([[p[t][2] for p in plans] for t in range(steps)])
        self.rows = torch.arange(batch)

    def trials(self):
        """Per step of one episode: (cue index or -1, whether it is Go, target shown in the trial)."""
        plan = []
        while len(plan) < self.steps:
            length = int(torch.randint(5, 9, (1,), generator=self.gen))
            shown = torch.randperm(4, generator=self.gen)[:2].tolist()
            at = (torch.randperm(length - 3, generator=self.gen)[:2] + 1).tolist()
            trial = [(-1, False)] * length
            for cue, step in zip(shown, at):
                trial[step] = (cue, False)
            trial[length - 2] = (-1, True)
            plan.extend((c, go, 0 in shown) for c, go in trial)
        return plan[: self.steps]

    def observe_at(self, t):
        cue = self.cue_at[t]
        shown = self.cues[self.rows, cue.clamp(min=0)] * (cue >= 0)[:, None].float()
        return torch.cat([shown, self.go_at[t][:, None].float()], 1)

    def step(self, action, t):
        right = action == self.target_at[t].long()
        return self.go_at[t].float() * (right.float() * 2 - 1)


class Agent(torch.nn.Module):
    def __init__(self, inputs, hidden, actions, kind):
        super().__init__()
        self.kind = kind
        self.w_in = torch.nn.Linear(inputs, hidden)
        self.w = torch.nn.Parameter(0.001 * torch.rand(hidden, hidden))
        self.alpha = torch.nn.Parameter(0.001 * torch.rand(hidden, hidden)) if kind != "rnn" else None
        self.eta = torch.nn.Parameter(torch.tensor(0.01)) if kind in ("plastic", "modul") else None
        self.heads = torch.nn.Linear(hidden, actions + 1 + (kind in ("modplast", "modul")))
        self.actions = actions

    def step(self, x, h, trace, elig):
        """One step: logits, value, new hidden state and traces."""
        # Fused ops (addcmul, baddbmm): the same maths as W + α⊙H and h·(W + α⊙H), with fewer
        # batch × N × N temporaries, so the peer runs at its best.
        if self.alpha is None:
            h_new = torch.tanh(torch.addmm(self.w_in(x), h, self.w))
        else:
            recurrent = torch.addcmul(self.w, self.alpha, trace)
            h_new = torch.tanh(torch.baddbmm(self.w_in(x)[:, None, :], h[:, None, :], recurrent)[:, 0])
        out = self.heads(h_new)
        logits, value = out[:, : self.actions], out[:, self.actions]
        if self.kind == "plastic":
            trace = torch.clamp(torch.addcmul(trace, (self.eta * h)[:, :, None], h_new[:, None, :]), -1.0, 1.0)
        elif self.kind == "modplast":
            m = torch.tanh(out[:, -1])
            trace = torch.clamp(torch.addcmul(trace, (m[:, None] * h)[:, :, None], h_new[:, None, :]), -1.0, 1.0)
        elif self.kind == "modul":
            m = torch.tanh(out[:, -1])
            trace = torch.clamp(torch.addcmul(trace, m[:, None, None], elig), -1.0, 1.0)
            elig = torch.addcmul((1 - self.eta) * elig, (self.eta * h)[:, :, None], h_new[:, None, :])
        return logits, value, h_new, trace, elig


def update(agent, opt, args, gen):
    """One whole A2C update over a batch of fresh episodes."""
    batch, hidden = args.batch, args.hidden
    env = Maze(batch, args.maze_size, args.eplen, gen) if args.task == "maze" else Cue(batch, args.eplen, gen)
    h = torch.zeros(batch, hidden)
    trace = torch.zeros(batch, hidden, hidden)
    elig = torch.zeros(batch, hidden, hidden)
    prev_reward = torch.zeros(batch)
    prev_action = torch.zeros(batch, env.actions)
    logits_t, values, actions, rewards = [], [], [], []
    ones = torch.ones(batch)
    for t in range(args.eplen):
        obs = env.observe() if args.task == "maze" else env.observe_at(t)
        shared = torch.stack([ones, torch.full((batch,), t / args.eplen), prev_reward], 1)
        x = torch.cat([obs, shared, prev_action], 1)
        logits, value, h, trace, elig = agent.step(x, h, trace, elig)
        with torch.no_grad():
            action = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen)[:, 0]
        reward = env.step(action, t)
        logits_t.append(logits)
        values.append(value)
        actions.append(action)
        rewards.append(reward)
        prev_reward = reward
        prev_action = torch.nn.functional.one_hot(action, env.actions).float()
    # The loss over the whole episode at once: (T, batch) returns, advantages and terms.
    returns = torch.zeros(args.eplen, batch)
    ret = torch.zeros(batch)
    for t in reversed(range(args.eplen)):
        ret = rewards[t] + 0.9 * ret
        returns[t] = ret
    logp = torch.log_softmax(torch.stack(logits_t), 2)
    logp_taken = logp.gather(2, torch.stack(actions)[:, :, None])[:, :, 0]
    advantage = returns - torch.stack(values)
    explore = logp.exp().pow(2).sum(2)
    loss = (-logp_taken * advantage.detach() + 0.1 * advantage.pow(2)
            + TASKS[args.task]["exploration"] * explore).mean(1).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), TASKS[args.task]["clip_norm"])
    opt.step()
    return float(loss.detach()), float(torch.stack(rewards).sum(0).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="maze")
    ap.add_argument("--type", choices=["rnn", "plastic", "modplast", "modul"], default="modul")
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--eplen", type=int, default=200, help="steps per episode")
    ap.add_argument("--maze-size", type=int, default=11)
    ap.add_argument("--steps", type=int, default=5, help="timed updates")
    ap.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--print-every", type=int, default=0, help="print the loss every k updates (0: never)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    inputs, actions = (9, 4) if args.task == "maze" else (Cue.bits + 1, 2)
    agent = Agent(inputs + SHARED_INPUTS + actions, args.hidden, actions, args.type)
    opt = torch.optim.Adam(agent.parameters(), lr=args.lr)
    print(f"# bohp peer: task={args.task} type={args.type} N={args.hidden} batch={args.batch} "
          f"steps/episode={args.eplen} updates={args.steps} warmup={args.warmup} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}", flush=True)
    times = []
    for k in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss, reward = update(agent, opt, args, gen)
        if k >= args.warmup:
            times.append(time.perf_counter() - start)
        if args.print_every and k % args.print_every == 0:
            print(f"update {k} loss {loss:.3f} reward {reward:.3f}", flush=True)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# RESULT task={args.task} type={args.type} batch={args.batch}: median s/update {med:.4f} "
          f"=> {med / args.batch:.5f} s/episode, {args.batch / med:.3f} episodes/s; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
