"""What bohp's JAX peers share: XLA's thread count (set before jax is imported) and the
finite-difference check of `jax.grad`."""
import os


def set_xla_threads(threads):
    """One intra-op thread pool of `threads` threads on the CPU, and the process pinned to
    `threads` cores; call before importing jax.

    The flags alone do not hold XLA to the count: jax 0.10's CPU client still starts its Eigen
    pool (`tf_XLAEigen` threads) on every core and runs independent operations on it (measured:
    165% CPU with `--threads 1` on 2 cores). The affinity mask does: the process then runs on
    the first `threads` cores it was allowed, whatever threads it starts."""
    flags = (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
             f"intra_op_parallelism_threads={threads}")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    allowed = sorted(os.sched_getaffinity(0))
    if threads < len(allowed):
        os.sched_setaffinity(0, allowed[:threads])


def cores():
    """The cores this process may run on, for the peers' header line."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def finite_differences(f, grads, params, eps=1e-6):
    """`(central difference, jax.grad)` of every entry of every parameter in `params` (a dict
    of arrays), for the scalar function `f` of such a dict and its gradient `grads`."""
    pairs = []
    for name, value in params.items():
        flat = value.reshape(-1)
        for i in range(flat.size):
            up = dict(params, **{name: flat.at[i].add(eps).reshape(value.shape)})
            down = dict(params, **{name: flat.at[i].add(-eps).reshape(value.shape)})
            fd = (float(f(up)) - float(f(down))) / (2 * eps)
            pairs.append((fd, float(grads[name].reshape(-1)[i])))
    return pairs


def gradient_error(f, grads, params):
    """`jax.grad` against central differences: the largest error over every entry relative to
    the largest gradient entry (‖fd − g‖∞ / ‖g‖∞: an entry near zero has only the differences'
    rounding left), and the number of entries."""
    pairs = finite_differences(f, grads, params)
    largest = max(abs(g) for _, g in pairs)
    return max(abs(fd - g) for fd, g in pairs) / largest, len(pairs)


def rss_mib():
    """The process's peak resident memory, MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start(ap):
    """Adds the options every JAX peer takes (`--seed`, `--threads`, `--print-every`,
    `--check`) to the script's parser `ap`, parses the command line, and prepares XLA before
    jax is imported: `--threads` cores (`set_xla_threads`), f64 for `--check`."""
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--print-every", type=int, default=0, help="print the loss every k updates (0: never)")
    ap.add_argument("--check", action="store_true", help="check jax.grad against finite differences (f64)")
    args = ap.parse_args()
    set_xla_threads(args.threads)
    if args.check:
        os.environ["JAX_ENABLE_X64"] = "1"  # read when jax is imported
    return args
