"""Speed of `klax.nn.MLP` and `klax.nn.FICNN` against `equinox.nn.MLP`.

Contenders, all jitted, a batch of 1024 samples via `jax.vmap`, float32:

(a) `equinox.nn.MLP(8 -> 64 -> 64 -> 1, softplus)`, the baseline;
(b) `klax.nn.MLP(8, 1, [64, 64])` (softplus, per-neuron activations);
(c) `klax.nn.MLP(2, 1, [64, 64])`;
(d) `klax.nn.FICNN(2, 1, [64, 64])` with passthrough; its non-negative weights
    are unwrapped inside the timed function, as in a training loss.

Each is timed for the forward pass and for forward + backward (gradient of the
mean squared output with respect to all parameters). Compilation is timed
separately (first call). Steady state: in each of R rounds every contender runs
N calls in turn (interleaved, so drifts of the machine hit all alike); a round's
time is the mean per call. Reported: min / median / max over rounds, and the
per-round ratios (b)/(a) and (d)/(c). Target: median (b)/(a) <= 1.10.

Run: `python benchmarks/networks.py [--quick]`.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402

import klax  # noqa: E402

BATCH = 1024


def forward(model, x):
    return jax.vmap(klax.unwrap(model))(x)


def loss(model, x):
    return jnp.mean(forward(model, x) ** 2)


def make_contenders(key):
    k1, k2, k3, k4 = jr.split(key, 4)
    eqx_mlp = eqx.nn.MLP(8, 1, 64, 2, activation=jax.nn.softplus, key=k1)
    klax_mlp = klax.nn.MLP(8, 1, [64, 64], key=k2)
    small_mlp = klax.nn.MLP(2, 1, [64, 64], key=k3)
    ficnn = klax.nn.FICNN(2, 1, [64, 64], key=k4)
    x8 = jr.normal(jr.fold_in(key, 8), (BATCH, 8))
    x2 = jr.normal(jr.fold_in(key, 2), (BATCH, 2))
    return {
        "equinox MLP 8-64-64-1": (eqx_mlp, x8),
        "klax MLP 8-64-64-1": (klax_mlp, x8),
        "klax MLP 2-64-64-1": (small_mlp, x2),
        "klax FICNN 2-64-64-1": (ficnn, x2),
    }


def time_calls(fn, model, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(model, x)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def stats(values):
    return min(values), statistics.median(values), max(values)


def fmt_us(values):
    lo, med, hi = stats(values)
    return f"{lo * 1e6:9.1f} {med * 1e6:9.1f} {hi * 1e6:9.1f}"


def fmt_ratio(values):
    lo, med, hi = stats(values)
    return f"{lo:6.3f} {med:6.3f} {hi:6.3f}"


def run(rounds, calls):
    contenders = make_contenders(jr.key(0))
    modes = {
        "forward": eqx.filter_jit(forward),
        "forward+backward": eqx.filter_jit(eqx.filter_value_and_grad(loss)),
    }
    print(f"devices: {jax.devices()}; batch {BATCH}; {rounds} rounds x {calls} calls")
    for mode, fn in modes.items():
        compile_s = {}
        for name, (model, x) in contenders.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(model, x))
            compile_s[name] = time.perf_counter() - start
        times = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, (model, x) in contenders.items():
                times[name].append(time_calls(fn, model, x, calls))
        print(f"\n{mode}: time per call in microseconds (first call incl. compile)")
        print(f"  {'contender':24s} {'min':>9s} {'median':>9s} {'max':>9s}  compile")
        for name in contenders:
            print(f"  {name:24s} {fmt_us(times[name])}  {compile_s[name]:6.2f} s")
        pairs = [
            ("klax MLP 8-64-64-1", "equinox MLP 8-64-64-1", "target <= 1.10"),
            ("klax FICNN 2-64-64-1", "klax MLP 2-64-64-1", ""),
        ]
        print(f"  {'ratio (per round)':42s} {'min':>6s} {'median':>6s} {'max':>6s}")
        for a, b, note in pairs:
            ratios = [ta / tb for ta, tb in zip(times[a], times[b], strict=True)]
            print(f"  {a + ' / ' + b:42s} {fmt_ratio(ratios)}  {note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, for CI")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 21)
    calls = args.calls or (20 if args.quick else 200)
    run(rounds, calls)


if __name__ == "__main__":
    main()
