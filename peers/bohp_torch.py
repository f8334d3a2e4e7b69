#!/usr/bin/env python3
"""bohp's PyTorch peer for the single plastic layer (Miconi 2016) and its three tasks.

Written for `bohp bench --peer-python` from the equations in docs/model.md, to measure bohp
against what a user without bohp would write: the networks, episodes, losses and Adam settings
of bohp's shipped configs (configs/completion.toml, one-shot.toml, reversal.toml), with the
gradient by PyTorch autograd (backpropagation through the whole episode) and a batch of
independent episodes per update.

    y(t) = tanh( x(t) · (w + α ⊙ H(t-1)) + b )        row vectors; w, α: [n_in, n_out]
    H(t) = (1 - γ) · H(t-1) + γ · x(t)ᵀ y(t)           H(0) = 0 in every episode

completion: 8 → 8, step 0 a random ±1 pattern, step 1 a cue keeping one of its bits; loss:
squared error at step 1 summed over bits. one-shot and reversal: 8 pattern bits followed by 2
label bits → plastic tanh hidden → linear readout → softmax; 20 steps, A and B alternating with
their label bits on the first two steps (and, for reversal, on the two steps after the swap at
step 10); loss: cross-entropy averaged over the unlabelled steps.

Timing: `--warmup` untimed updates, then `--episodes` timed whole updates (episode generation,
forward, backward, Adam step), reported on the last line as
`# train time S s for U updates x batch B: R updates/s, E episodes/s`.
"""
import argparse
import time

import torch

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


def signs(shape, gen):
    """Random ±1 entries."""
    return torch.randint(0, 2, shape, generator=gen).float().mul_(2).sub_(1)


def completion_batch(batch, gen):
    """Inputs [2, B, 8] and the target pattern [B, 8]."""
    pattern = signs((batch, BITS), gen)
    kept = torch.randint(0, BITS, (batch,), generator=gen)
    cue = torch.zeros_like(pattern)
    rows = torch.arange(batch)
    cue[rows, kept] = pattern[rows, kept]
    return torch.stack([pattern, cue]), pattern


def labelled_batch(batch, steps, reversal, gen):
    """Inputs [T, B, 10], the class of each step [T] and which steps are scored [T]."""
    a = signs((batch, BITS), gen)
    b = signs((batch, BITS), gen)
    same = (a == b).all(1)
    while bool(same.any()):
        b[same] = signs((int(same.sum()), BITS), gen)
        same = (a == b).all(1)
    t = torch.arange(steps)
    cls = (t % 2 == 0).long()  # class 1 on even steps, 0 on odd ones
    shows_a = t % 2 == 0
    labelled = t < LABELLED
    if reversal:
        swap = steps // 2
        shows_a = shows_a ^ (t >= swap)
        labelled = labelled | ((t >= swap) & (t < swap + LABELLED))
    patterns = torch.where(shows_a[:, None, None], a[None], b[None])  # [T, B, 8]
    label_bits = torch.nn.functional.one_hot(cls, LABELS).float() * labelled[:, None].float()
    x = torch.cat([patterns, label_bits[:, None, :].expand(steps, batch, LABELS)], dim=2)
    return x, cls, ~labelled



class PlasticNet(torch.nn.Module):
    def __init__(self, n_in, n_out, classes, init_std, gamma):
        super().__init__()
        self.gamma = gamma
        self.w = torch.nn.Parameter(init_std * torch.randn(n_in, n_out))
        self.alpha = torch.nn.Parameter(init_std * torch.randn(n_in, n_out))
        self.b = torch.nn.Parameter(init_std * torch.randn(n_out))
        self.readout = None
        if classes:
            self.v = torch.nn.Parameter(init_std * torch.randn(n_out, classes).abs())
            self.c = torch.nn.Parameter(init_std * torch.randn(classes))
            self.readout = True

    def forward(self, x):
        """x: [T, B, n_in] -> outputs [T, B, n_out] (tanh) or logits [T, B, classes]."""
        steps, batch, n_in = x.shape
        h = x.new_zeros(batch, n_in, self.w.shape[1])
        outs = []
        for t in range(steps):
            xt = x[t]
            weights = self.w + self.alpha * h  # [B, n_in, n_out]
            y = torch.tanh(torch.bmm(xt[:, None, :], weights)[:, 0] + self.b)
            h = (1 - self.gamma) * h + self.gamma * xt[:, :, None] * y[:, None, :]
            outs.append(y @ self.v + self.c if self.readout else y)
        return torch.stack(outs)


def update(net, opt, task, batch, steps, gen):
    """One whole update: new episodes, forward, loss, backward, Adam step. Returns the loss."""
    if task == "completion":
        x, pattern = completion_batch(batch, gen)
        y = net(x)[-1]
        loss = (y - pattern).pow(2).sum(1).mean()
    else:
        x, cls, scored = labelled_batch(batch, steps, task == "reversal", gen)
        logits = net(x)[scored]  # [S, B, classes]
        target = cls[scored][:, None].expand(-1, batch)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, LABELS), target.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="oneshot")
    ap.add_argument("--episodes", type=int, default=1000, help="timed updates")
    ap.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    ap.add_argument("--batch", type=int, default=1, help="independent episodes per update")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--print-every", type=int, default=0, help="print the loss every k updates (0: never)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    s = TASKS[args.task]
    n_in = BITS if args.task == "completion" else BITS + LABELS
    classes = 0 if args.task == "completion" else LABELS
    net = PlasticNet(n_in, s["hidden"], classes, s["init_std"], s["gamma"])
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"], betas=(0.9, 0.9))
    print(f"# bohp peer: task={args.task} batch={args.batch} updates={args.episodes} warmup={args.warmup} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    for _ in range(args.warmup):
        update(net, opt, args.task, args.batch, s["steps"], gen)
    start = time.perf_counter()
    for k in range(args.episodes):
        loss = update(net, opt, args.task, args.batch, s["steps"], gen)
        if args.print_every and k % args.print_every == 0:
            print(f"update {k} loss {float(loss.detach()):.5f}")
    seconds = time.perf_counter() - start
    print(f"# train time {seconds:.3f} s for {args.episodes} updates x batch {args.batch}: "
          f"{args.episodes / seconds:.1f} updates/s, {args.episodes * args.batch / seconds:.1f} episodes/s")


if __name__ == "__main__":
    raise SystemExit(main())
