"""Cost of a whole CANN regularisation path against one unregularised fit.

The task: the 12-term isotropic CANN (`klax.mechanics.CANN`, isochoric
invariants, inputs scaled by their Treloar range, energy scaled by the
largest strain energy in the data) on Treloar's uniaxial and equibiaxial
points (42, whole data as one batch, mse of P11, `--steps` updates, learning
rate 1e-2).

(a) one unregularised fit: `klax.fit` with `optax.adam(1e-2)` and the outer
    weights as `klax.NonNegative`;
(b) the regularisation path: `klax.mechanics.regularisation_path` with
    `--strengths` (default 16) log-spaced strengths, i.e. one
    `klax.fit_ensemble` call with `sparse_adam` (proximal L1 step), the same
    steps and the same batch.

Both are timed end to end, as a user calls them (model construction,
compilation, training, final losses; a new optimizer object per call, so
each call compiles its loop). The runs are interleaved, a, b, a, b, ..., in
one process after one untimed warm-up of each (imports and shared kernels),
so that the noise of a shared machine hits both sides alike. Reported: the
wall times and the ratio b/a per repetition, min/median/max. Target:
ratio <= 3.

Run: `python benchmarks/cann_path.py [--steps S] [--strengths N] [--runs R]`
(`--quick`: 300 steps, 2 runs).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import klax
import klax.mechanics as km

jax.config.update("jax_enable_x64", True)
TRAIN = ["uniaxial", "equibiaxial"]


def setup():
    curves = km.read_curves()
    data = km.stress_data(curves, TRAIN)
    scales = km.invariant_scales(curves, TRAIN, "isochoric")
    energy = km.data_energy_scale(curves, TRAIN)
    return data, scales, energy


def single_fit(data, scales, energy, steps):
    model = km.CANN(
        input_scale=scales, energy_scale=energy, sparse=False, key=jr.key(0)
    )
    arrays = tuple(jnp.asarray(a) for a in data)
    model, _ = klax.fit(
        model,
        arrays,
        batch_size=len(data.stretch),
        steps=steps,
        loss=km.stress_loss,
        optimizer=optax.adam(1e-2),
        log_every=100,
        verbose=0,
        key=jr.key(1),
    )
    return float(km.stress_loss(model, arrays, None))


def path_fit(data, scales, energy, steps, n):
    model = km.CANN(input_scale=scales, energy_scale=energy, key=jr.key(0))
    path = km.regularisation_path(
        model, data, n, steps=steps, learning_rate=1e-2, key=jr.key(1)
    )
    return path


def main():
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--strengths", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, runs = (300, 2) if args.quick else (args.steps, args.runs)
    data, scales, energy = setup()
    single_fit(data, scales, energy, 10)  # warm-up, untimed
    path_fit(data, scales, energy, 10, args.strengths)
    single, path, ratio = [], [], []
    for r in range(runs):
        t0 = time.perf_counter()
        loss = single_fit(data, scales, energy, steps)
        t1 = time.perf_counter()
        result = path_fit(data, scales, energy, steps, args.strengths)
        t2 = time.perf_counter()
        single.append(t1 - t0)
        path.append(t2 - t1)
        ratio.append((t2 - t1) / (t1 - t0))
        print(
            f"run {r}: single fit {t1 - t0:.2f} s (loss {loss:.3g}), "
            f"path of {args.strengths} {t2 - t1:.2f} s "
            f"(active terms {result.active.sum(axis=1).tolist()}), "
            f"ratio {ratio[-1]:.2f}"
        )

    def summary(values):
        return (
            f"min {min(values):.2f} / median {statistics.median(values):.2f} / "
            f"max {max(values):.2f}"
        )

    print(f"steps {steps}, strengths {args.strengths}, runs {runs}")
    print(f"(a) single fit, s:  {summary(single)}")
    print(f"(b) path, s:        {summary(path)}")
    print(f"ratio (b)/(a):      {summary(ratio)}   (target <= 3)")


if __name__ == "__main__":
    main()
