"""Collapse rate of the Treloar PANN calibration, before and after the fixes.

The calibration of an incompressible PANN (FICNN 1×8 on (Ĩ1, Ĩ2), Adam 2e-3,
batch 32, trained with `klax.fit` on Treloar's uniaxial + equibiaxial data)
sometimes "collapses": every hidden-to-output weight is driven below zero in
the first few hundred steps, the projection of `klax.NonNegative` sets it to
exactly zero, and the hidden units never recover. What is left is affine in
the invariants, i.e. a Mooney–Rivlin model (uniaxial R² ≈ 0.83, pure-shear
R² < 0).

A seed counts as collapsed when all its hidden-to-output weights are below
1e-8 ("dead output layer", reported separately) or its training R² of some
case is below 0.95. Configurations:

- `raw/clamp`: shifted but unscaled inputs, projection (the reference setup);
- `raw/softplus`: unscaled inputs, weights as softplus of free parameters
  (`klax.mechanics.reparametrize_nonnegative`);
- `scaled/clamp`: inputs divided by their range on the training data
  (`klax.mechanics.invariant_scales`; the klax-calibrate default);
- `scaled/softplus`: both.

With the detector + restart of `klax.mechanics.calibrate_seeds` (what
klax-calibrate runs) a collapsed seed is retrained from a fresh seed, so the
kept model is never a collapsed one; the rates below say how often that
costs a restart. Per configuration the script prints the collapse count and
min / median / max of the training loss and of R² (pure shear, predicted).

Run: `python benchmarks/collapse.py [--seeds 12] [--steps 20000]`.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax  # noqa: E402
import jax.random as jr  # noqa: E402

import klax  # noqa: E402
from klax.mechanics import (  # noqa: E402
    build_model,
    fit_metrics,
    invariant_scales,
    read_curves,
    stress_data,
    train_seeds,
)
from klax.mechanics._calibration import evaluate_cases, output_weights_dead  # noqa: E402

CASES = ("uniaxial", "equibiaxial", "pure_shear")
TRAIN = ["uniaxial", "equibiaxial"]


def run(name, config, curves, seeds, steps):
    data = stress_data(curves, TRAIN)
    start = time.perf_counter()
    trained = train_seeds(
        lambda key: build_model(config, key=key),
        data,
        list(range(seeds)),
        base_key=jr.key(0),
        steps=steps,
        learning_rate=2e-3,
        batch_size=32,
        log_every=max(steps // 10, 1),
        verbose=0,
    )
    elapsed = time.perf_counter() - start
    collapsed, dead_count, losses, r2_ps = 0, 0, [], []
    for model, _, loss in trained:
        final = klax.finalize(model)
        predicted = evaluate_cases(final, CASES, [curves[c].stretch for c in CASES])
        r2 = {
            c: fit_metrics(curves[c].stress, p).r2
            for c, p in zip(CASES, predicted, strict=True)
        }
        dead = output_weights_dead(final)
        dead_count += dead
        if dead or min(r2[c] for c in TRAIN) < 0.95:
            collapsed += 1
        losses.append(loss)
        r2_ps.append(r2["pure_shear"])

    def mmm(values, fmt):
        return "/".join(
            format(v, fmt)
            for v in (min(values), statistics.median(values), max(values))
        )

    print(
        f"{name:<16} collapsed {collapsed:>2}/{seeds} (dead output layer "
        f"{dead_count:>2})  loss min/med/max "
        f"{mmm(losses, '.2e')}  R²(PS) {mmm(r2_ps, '.4f')}  ({elapsed:.0f} s)",
        flush=True,
    )
    return collapsed


def main():
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20000)
    args = parser.parse_args()
    with jax.enable_x64(True):
        curves = read_curves()
        scales = list(invariant_scales(curves, TRAIN, "polyconvex"))
        base = dict(model="pann", width_sizes=[8], invariants="polyconvex")
        print(f"{args.seeds} seeds, {args.steps} steps; scaled inputs: {scales}")
        for name, scale, positivity in (
            ("raw/clamp", [1.0, 1.0], "clamp"),
            ("raw/softplus", [1.0, 1.0], "softplus"),
            ("scaled/clamp", scales, "clamp"),
            ("scaled/softplus", scales, "softplus"),
        ):
            config = dict(base, input_scale=scale, positivity=positivity)
            run(name, config, curves, args.seeds, args.steps)


if __name__ == "__main__":
    main()
