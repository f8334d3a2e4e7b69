#!/usr/bin/env python3
"""bohp's PyTorch peer for the recurrent plastic network (differentiable plasticity, 2018) on
binary pattern memorisation.

Written for `bohp bench --peer-python` from the equations in docs/recurrent.md: the network,
episodes, loss and Adam settings of bohp's memorisation configs (configs/memorisation.toml,
configs/scaling/), a batch of independent episodes per update. Row-vector convention:

    y(t) = tanh( y(t-1) · (W + α ⊙ H(t-1)) + u(t) )
    H(t) = (1 - η) · H(t-1) + η · y(t-1)ᵀ y(t)          y(0) = 0, H(0) = 0; η learned

Episode: `--nbpatterns` random ±1 patterns of `--size` bits, each shown `--prescycles` times for
`--prestime` steps (input gain 20) then `--interpresdelay` silent steps, the order shuffled per
cycle; then one of them with a random half of its bits zeroed for `--prestimetest` steps (106
steps by default). Loss: Σ_j (y_j(T) - pattern_j)², averaged over the batch.

Two implementations of the gradient (`--impl`):
- `autograd`: the plain loop; autograd keeps every step's `B × N × N` intermediates.
- `fused`: one autograd Function for the whole episode whose backward is written by hand. The
  forward keeps the outputs y(t) and only the last trace; the backward recomputes each earlier
  trace from the next one, H(t-1) = (H(t) - η·y(t-1)ᵀy(t)) / (1 - η), so memory does not grow
  with the episode.

Timing: `--warmup` untimed updates, then `--steps` timed whole updates (episode generation,
forward, backward, Adam step); the last line is
`# RESULT N=.. batch=.. impl=..: median s/update S => E s/episode, R episodes/s; peak RSS M MiB`.
"""
import argparse
import resource
import statistics
import time

import torch


def episodes(args, gen):
    """Inputs [T, B, N] and the probed pattern [B, N]."""
    n, batch = args.size, args.batch
    block = args.prestime + args.interpresdelay
    steps = args.nbpatterns * args.prescycles * block + args.prestimetest
    u = torch.zeros(steps, batch, n)
    target = torch.empty(batch, n)
    for b in range(batch):
        patterns = torch.randint(0, 2, (args.nbpatterns, n), generator=gen).float().mul_(2).sub_(1)
        for c in range(args.prescycles):
            order = torch.randperm(args.nbpatterns, generator=gen)
            for k, item in enumerate(order.tolist()):
                t0 = (c * args.nbpatterns + k) * block
                u[t0:t0 + args.prestime, b] = patterns[item] * args.input_gain
        probe = int(torch.randint(0, args.nbpatterns, (1,), generator=gen))
        erased = torch.randperm(n, generator=gen)[: n // 2]
        cue = patterns[probe].clone()
        cue[erased] = 0
        u[steps - args.prestimetest:, b] = cue * args.input_gain
        target[b] = patterns[probe]
    return u, target


class Net(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = torch.nn.Parameter(0.01 * torch.randn(n, n))
        self.alpha = torch.nn.Parameter(0.01 * torch.randn(n, n))
        self.eta = torch.nn.Parameter(torch.tensor(0.01))


def loss_autograd(net, u, target):
    steps, batch, n = u.shape
    y = u.new_zeros(batch, n)
    h = u.new_zeros(batch, n, n)
    for t in range(steps):
        pre = y
        y = torch.tanh(torch.bmm(pre[:, None, :], net.w + net.alpha * h)[:, 0] + u[t])
        h = (1 - net.eta) * h + net.eta * pre[:, :, None] * y[:, None, :]
    return (y - target).pow(2).sum(1).mean()


class Episode(torch.autograd.Function):
    """The whole episode's loss with a hand-written backward (see the module documentation)."""

    @staticmethod
    def forward(ctx, w, alpha, eta, u, target):
        steps, batch, n = u.shape
        ys = u.new_zeros(steps + 1, batch, n)  # ys[t] = y(t), y(0) = 0
        h = u.new_zeros(batch, n, n)
        e = float(eta)
        for t in range(1, steps + 1):
            pre = ys[t - 1]
            ys[t] = torch.tanh(torch.bmm(pre[:, None, :], w + alpha * h)[:, 0] + u[t - 1])
            h.mul_(1 - e).add_(pre[:, :, None] * ys[t][:, None, :], alpha=e)
        ctx.save_for_backward(w, alpha, ys, h, target)
        ctx.eta = e
        return (ys[-1] - target).pow(2).sum(1).mean()

    @staticmethod
    def backward(ctx, g_loss):
        w, alpha, ys, h, target = ctx.saved_tensors
        e = ctx.eta
        steps, batch = ys.shape[0] - 1, ys.shape[1]
        g_w = torch.zeros_like(w)
        g_alpha = torch.zeros_like(alpha)
        g_eta = torch.zeros(())
        g_h = torch.zeros_like(h)  # ∂L/∂H(t)
        g_y = g_loss * 2 * (ys[-1] - target) / batch  # ∂L/∂y(t), through later steps
        for t in range(steps, 0, -1):
            pre, post = ys[t - 1], ys[t]
            outer = pre[:, :, None] * post[:, None, :]
            # y(t) as the postsynaptic side of H(t)'s update.
            g_y = g_y + e * torch.einsum("bij,bi->bj", g_h, pre)
            g_raw = g_y * (1 - post * post)
            h = (h - e * outer) / (1 - e)  # H(t-1)
            g_eta += (g_h * (outer - h)).sum()
            g_outer = pre[:, :, None] * g_raw[:, None, :]  # ∂L/∂(W + α⊙H(t-1)), per episode
            g_w += g_outer.sum(0)
            g_alpha += (g_outer * h).sum(0)
            # y(t-1) as the input of step t and the presynaptic side of H(t)'s update.
            g_y = torch.bmm(w + alpha * h, g_raw[:, :, None])[:, :, 0]
            g_y = g_y + e * torch.einsum("bij,bj->bi", g_h, post)
            g_h = (1 - e) * g_h + g_outer * alpha
        return g_w, g_alpha, g_eta, None, None


def gradcheck(args):
    """The fused backward against autograd, in f64 on a small network; exits non-zero if they differ."""
    torch.set_default_dtype(torch.float64)
    small = argparse.Namespace(**{**vars(args), "size": 12, "batch": 3})
    gen = torch.Generator().manual_seed(args.seed)
    net = Net(small.size)
    with torch.no_grad():
        net.w.mul_(30)
        net.alpha.mul_(30)
        net.eta.fill_(0.1)
    u, target = episodes(small, gen)
    u = u / small.input_gain  # keep the neurons off saturation so the check sees every path
    a = torch.autograd.grad(loss_autograd(net, u, target), list(net.parameters()))
    f = torch.autograd.grad(Episode.apply(net.w, net.alpha, net.eta, u, target), list(net.parameters()))
    worst = max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-300)) for x, y in zip(f, a))
    print(f"# gradcheck: fused vs autograd, max relative difference {worst:.2e}")
    return 0 if worst < 1e-8 else 1


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1000, help="pattern bits = neurons N")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed updates")
    ap.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    ap.add_argument("--impl", choices=["autograd", "fused"], default="autograd")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--nbpatterns", type=int, default=5)
    ap.add_argument("--prescycles", type=int, default=2)
    ap.add_argument("--prestime", type=int, default=6)
    ap.add_argument("--interpresdelay", type=int, default=4)
    ap.add_argument("--prestimetest", type=int, default=6)
    ap.add_argument("--input-gain", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--print-every", type=int, default=0, help="print the loss every k updates (0: never)")
    ap.add_argument("--gradcheck", action="store_true", help="check the fused backward against autograd and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.gradcheck:
        return gradcheck(args)
    gen = torch.Generator().manual_seed(args.seed)
    net = Net(args.size)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    print(f"# bohp peer: N={args.size} batch={args.batch} impl={args.impl} updates={args.steps} "
          f"warmup={args.warmup} threads={torch.get_num_threads()} torch={torch.__version__}", flush=True)
    times = []
    for k in range(args.warmup + args.steps):
        start = time.perf_counter()
        u, target = episodes(args, gen)
        if args.impl == "autograd":
            loss = loss_autograd(net, u, target)
        else:
            loss = Episode.apply(net.w, net.alpha, net.eta, u, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= args.warmup:
            times.append(time.perf_counter() - start)
        if args.print_every and k % args.print_every == 0:
            print(f"update {k} loss {float(loss.detach()):.3f} eta {float(net.eta.detach()):.4f}", flush=True)
    med = statistics.median(times)
    print(f"# RESULT N={args.size} batch={args.batch} impl={args.impl}: median s/update {med:.4f} "
          f"=> {med / args.batch:.5f} s/episode, {args.batch / med:.3f} episodes/s; "
          f"peak RSS {rss_mib():.0f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
