"""Wall time of `klax.fit` against a per-step loop and a hand-fused `lax.scan`.

The task: calibrate a hyperelastic potential to Treloar's 25 uniaxial points,

    W(Ī1, Ī2) = FICNN(Ī1, Ī2) - FICNN(3, 3),
    FICNN(2 -> [8, 8] -> "scalar", use_passthrough=True, non_decreasing=True),

with the isochoric invariants of the principal stretches (λ, λ^-1/2, λ^-1/2)
and the nominal stress P11 = ∂W/∂λ1 - (λ3/λ1) ∂W/∂λ3 by automatic
differentiation; mse against the data, adam(2e-3), batch_size 32 (the whole
data), 100,000 steps.

Contenders (interleaved, 3 runs each; every run builds its model and
optimizer afresh, so each wall time includes compilation):

(a) `klax.fit(..., log_every=1000, verbose=0)`;
(b) a conventional loop: one `eqx.filter_jit` step per Python iteration, fed
    NumPy batches drawn on the host (reshuffled per epoch), the loss evaluated
    every 1000 steps;
(c) the floor: a hand-written loop fusing 1000 steps per `lax.scan` call on
    the whole data (no shuffling, no guard, no logging);
(d) `klax.fit` with its defaults `log_every=100, verbose=2` (progress bar on
    stderr).

Targets: (b)/(a) >= 12, (a)/(c) <= 1.3, (b)/(d) >= 8.

Run: `python benchmarks/treloar_fit.py [--steps N] [--runs R] [--only abcd]
[--per-step-fraction F]`. The per-step loop (b) is slow (about 80 s for the
full 100,000 steps on a laptop CPU); with `--per-step-fraction F` it runs
`F * steps` steps and its wall time (less its compilation) is scaled by
`1 / F`, which is exact up to noise because each of its steps costs the same.
The last line is the process's peak resident memory (ru_maxrss).
"""

import argparse
import csv
import importlib.resources
import os
import resource
import statistics
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import klax  # noqa: E402

LEARNING_RATE = 2e-3
BATCH_SIZE = 32
CHUNK = 1000


def load_uniaxial() -> tuple[np.ndarray, np.ndarray]:
    """Treloar's uniaxial stretches and nominal stresses (MPa), shape (25,)."""
    text = importlib.resources.files("klax.data").joinpath("treloar.csv").read_text()
    rows = [
        r for r in csv.DictReader(text.splitlines()) if r["load_case"] == "uniaxial"
    ]
    stretch = np.array([float(r["stretch"]) for r in rows], dtype=np.float32)
    stress = np.array([float(r["nominal_stress_MPa"]) for r in rows], dtype=np.float32)
    return stretch, stress


class Potential(eqx.Module):
    """W(λ1, λ2, λ3) = FICNN(Ī1, Ī2) - FICNN(3, 3)."""

    ficnn: klax.nn.FICNN

    def __call__(self, stretches: jax.Array) -> jax.Array:
        l1, l2, l3 = stretches[0], stretches[1], stretches[2]
        j = l1 * l2 * l3
        i1 = l1**2 + l2**2 + l3**2
        i2 = (l1 * l2) ** 2 + (l2 * l3) ** 2 + (l1 * l3) ** 2
        invariants = jnp.stack([j ** (-2 / 3) * i1, j ** (-4 / 3) * i2])
        reference = jnp.full((2,), 3.0, dtype=invariants.dtype)
        return self.ficnn(invariants) - self.ficnn(reference)


class UniaxialStress(eqx.Module):
    """P11 of incompressible uniaxial tension at stretch λ (a scalar)."""

    potential: Potential

    def __call__(self, stretch: jax.Array) -> jax.Array:
        lateral = stretch**-0.5
        stretches = jnp.stack([stretch, lateral, lateral])
        dw = jax.grad(self.potential)(stretches)
        return dw[0] - stretches[2] / stretches[0] * dw[2]


def make_model(key: jax.Array) -> UniaxialStress:
    ficnn = klax.nn.FICNN(
        2, "scalar", [8, 8], use_passthrough=True, non_decreasing=True, key=key
    )
    return UniaxialStress(Potential(ficnn))


def run_fit(x, y, steps, *, log_every=1000, verbose=0):
    model = make_model(jr.key(0))
    model, history = klax.fit(
        model,
        (x, y),
        batch_size=BATCH_SIZE,
        steps=steps,
        optimizer=optax.adam(LEARNING_RATE),
        log_every=log_every,
        verbose=verbose,
        key=jr.key(1),
    )
    jax.block_until_ready(model)
    return float(history["loss"][1][-1])


def run_per_step(x, y, steps):
    model = klax.apply(make_model(jr.key(0)))
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, opt_state, batch):
        value, grad = klax.mse.value_and_grad(model, batch, None)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        model = klax.apply(eqx.combine(optax.apply_updates(params, updates), static))
        return model, opt_state, value

    loss = eqx.filter_jit(klax.mse)
    rng = np.random.default_rng(0)
    n = x.shape[0]
    batch_size = min(BATCH_SIZE, n)
    perm, position = rng.permutation(n), 0
    value = None
    for i in range(steps):
        if position + batch_size > n:
            perm, position = rng.permutation(n), 0
        idx = perm[position : position + batch_size]
        position += batch_size
        model, opt_state, _ = step(model, opt_state, (x[idx], y[idx]))
        if (i + 1) % 1000 == 0:
            value = float(loss(model, (x, y), None))
    jax.block_until_ready(model)
    return value


def run_scan(x, y, steps):
    model = klax.apply(make_model(jr.key(0)))
    optimizer = optax.adam(LEARNING_RATE)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    data = (jnp.asarray(x), jnp.asarray(y))

    @jax.jit
    def run_chunk(params, opt_state):
        def step(carry, _):
            params, opt_state = carry
            value, grad = klax.mse.value_and_grad(
                eqx.combine(params, static), data, None
            )
            updates, opt_state = optimizer.update(grad, opt_state, params)
            params = optax.apply_updates(params, updates)
            params = eqx.filter(
                klax.apply(eqx.combine(params, static)), eqx.is_inexact_array
            )
            return (params, opt_state), value

        (params, opt_state), values = jax.lax.scan(
            step, (params, opt_state), length=CHUNK
        )
        return params, opt_state, values[-1]

    value = None
    for _ in range(steps // CHUNK):
        params, opt_state, value = run_chunk(params, opt_state)
    jax.block_until_ready(params)
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only", default="abcd", help="contenders to run, e.g. 'ac' (default abcd)"
    )
    parser.add_argument(
        "--per-step-fraction",
        type=float,
        default=1.0,
        help="run (b) on this fraction of the steps and scale its time (0 < F <= 1)",
    )
    args = parser.parse_args()
    fraction = args.per_step_fraction
    if not 0 < fraction <= 1:
        parser.error(f"--per-step-fraction must be in (0, 1], but got {fraction}.")
    per_step_steps = max(CHUNK, round(args.steps * fraction / CHUNK) * CHUNK)
    fraction = per_step_steps / args.steps
    x, y = load_uniaxial()
    # Warm up what every contender shares (building and constraining the model,
    # eager kernels of the initializers), so the first run is not charged for it.
    jax.block_until_ready(klax.apply(make_model(jr.key(0))))
    compile_time = [0.0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kwargs: (
            compile_time.__setitem__(0, compile_time[0] + duration)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    contenders = {
        "a": (
            "klax.fit (log_every=1000, verbose=0)",
            lambda: run_fit(x, y, args.steps),
        ),
        "b": (
            "per-step jit loop, host batches",
            lambda: run_per_step(x, y, per_step_steps),
        ),
        "c": ("hand-fused lax.scan, 1000/call", lambda: run_scan(x, y, args.steps)),
        "d": (
            "klax.fit defaults (log_every=100, verbose=2)",
            lambda: run_fit(x, y, args.steps, log_every=100, verbose=2),
        ),
    }
    chosen = [c for c in "abcd" if c in args.only]
    times: dict[str, list[float]] = {c: [] for c in chosen}
    compiles: dict[str, list[float]] = {c: [] for c in chosen}
    cpu: dict[str, list[float]] = {c: [] for c in chosen}
    losses: dict[str, float] = {}
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs"
    )
    print(f"{args.steps} steps, {args.runs} interleaved runs each")
    if fraction < 1:
        print(f"(b) runs {per_step_steps} steps, its time scaled by {1 / fraction:g}")
    print()
    for run in range(args.runs):
        for c in chosen:
            compile_time[0] = 0.0
            start, start_cpu = time.perf_counter(), time.process_time()
            losses[c] = contenders[c][1]()
            wall = time.perf_counter() - start
            used = time.process_time() - start_cpu
            if c == "b" and fraction < 1:  # scale the steps, not the compilation
                wall = compile_time[0] + (wall - compile_time[0]) / fraction
                used = compile_time[0] + (used - compile_time[0]) / fraction
            times[c].append(wall)
            cpu[c].append(used)
            compiles[c].append(compile_time[0])
            print(
                f"run {run + 1} ({c}) {times[c][-1]:8.2f} s wall, "
                f"{cpu[c][-1]:8.2f} s CPU (XLA compilation {compiles[c][-1]:.2f} s)",
                flush=True,
            )
    print()
    print("wall time in s, including compilation (median compile time in brackets)")
    print(f"{'':4}{'contender':44}{'min':>8}{'median':>8}{'max':>8}  compile  loss")
    for c in chosen:
        t = times[c]
        print(
            f"({c}) {contenders[c][0]:44}{min(t):8.2f}{statistics.median(t):8.2f}"
            f"{max(t):8.2f}  ({statistics.median(compiles[c]):5.2f})  {losses[c]:.3e}"
        )
    print("\nratios (min / median / max of the per-run ratios, runs paired in order):")

    def ratio(num: str, den: str, target: str) -> None:
        if num in times and den in times:
            r = [a / b for a, b in zip(times[num], times[den], strict=True)]
            print(
                f"  ({num})/({den}) = {min(r):6.2f} / {statistics.median(r):6.2f} / "
                f"{max(r):6.2f}   target {target}"
            )

    ratio("b", "a", ">= 12")
    ratio("a", "c", "<= 1.3")
    ratio("b", "d", ">= 8")
    print("\nthe same with process CPU time (less sensitive to other load):")
    times.clear()
    times.update(cpu)
    ratio("b", "a", ">= 12")
    ratio("a", "c", "<= 1.3")
    ratio("b", "d", ">= 8")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
