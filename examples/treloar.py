"""Calibrating a hyperelastic potential to Treloar's rubber data.

A physics-augmented neural network (PANN) for an incompressible isotropic
material, `klax.mechanics.IncompressiblePANN`: the strain-energy density is an
input-convex network N of the two polyconvex isochoric invariants,

    W(F) = N((Ĩ1 - 3) / s1, (Ĩ2 - 3^(3/2)) / s2) - N(0, 0),

with N convex and non-decreasing in both inputs (a `klax.nn.FICNN` with
`non_decreasing=True`), so W is polyconvex, objective, isotropic and zero in
the reference state by construction. The nominal stress of each homogeneous
load case follows by automatic differentiation. The model is calibrated on
uniaxial and equibiaxial tension and predicts pure shear.

Run: `python examples/treloar.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from matplotlib.figure import Figure

import klax
from klax.mechanics import (
    IncompressiblePANN,
    fit_metrics,
    invariant_scales,
    nominal_stress_11,
    read_curves,
)

jax.config.update("jax_enable_x64", True)  # calibrate in float64
FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"
TRAIN = ("uniaxial", "equibiaxial")
TEST = ("pure_shear",)


# %% [markdown]
# The loss: squared error of P11 over all training points. The whole training
# set is one batch (`batch_axes=None`): a dict of `(stretch, stress)` per load
# case, so each case is evaluated with its own kinematics.


# %%
@klax.loss
def stress_mse(W, data, run_state):
    del run_state
    errors = [nominal_stress_11(W, case, lam) - P for case, (lam, P) in data.items()]
    return jnp.mean(jnp.concatenate(errors) ** 2)


@eqx.filter_jit
def predict(W, stretches):
    """P11 for each load case (the dict keys) at each array of stretches."""
    return {
        case: tuple(nominal_stress_11(W, case, lam) for lam in lams)
        for case, lams in stretches.items()
    }


# %%
def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 100 if quick else 10_000
    # Treloar's data ships with klax: {load case: LoadCurve(stretch, stress)}.
    curves = read_curves()
    data = {
        case: (jnp.asarray(c.stretch), jnp.asarray(c.stress))
        for case, c in curves.items()
    }
    train = {case: data[case] for case in TRAIN}

    # Dividing the shifted invariants by their range on the training data
    # (Ĩ2 reaches several thousand in equibiaxial tension) keeps the network
    # inputs in [0, 1]; positive scalings preserve convexity and monotonicity.
    scales = invariant_scales(curves, TRAIN, "polyconvex")
    model = IncompressiblePANN([8], input_scale=scales, key=jr.key(0))
    model, history = klax.fit(
        model,
        train,
        batch_axes=None,
        steps=steps,
        loss=stress_mse,
        optimizer=optax.adam(5e-3),
        log_every=max(steps // 10, 1),
        verbose=1,
        key=jr.key(1),
    )
    W = klax.finalize(model)

    # Stresses at the measured stretches and on a fine grid, all in one
    # compiled call.
    stretches = {
        case: (lam, jnp.linspace(1.0, 1.05 * lam.max(), 200))
        for case, (lam, _) in data.items()
    }
    stresses = predict(W, stretches)

    fig = Figure(figsize=(13, 3.4), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, case in zip(axes[:-1], TRAIN + TEST, strict=True):
        (lam, P), (_, grid) = data[case], stretches[case]
        P_data, P_grid = stresses[case]
        split = "train" if case in TRAIN else "test"
        score = fit_metrics(P, P_data).r2
        print(f"{case:>12} ({split}): R² = {score:.4f}")
        ax.plot(lam, P, "ko", ms=4, mfc="none", label="Treloar (1944)")
        ax.plot(grid, P_grid, "C0-", label="PANN")
        ax.set(xlabel="$\\lambda_1$", ylabel="$P_{11}$ / MPa")
        ax.set_title(f"{case} ({split}), $R^2$ = {score:.3f}")
        ax.legend(loc="upper left")
    history.plot(ax=axes[-1])
    axes[-1].set(xlabel="Step", yscale="log", title="Training loss")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "treloar.png", dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="where to save the figure (default: docs/examples/figures for a full "
        "run; not saved with --quick)",
    )
    args = parser.parse_args()
    main(args.quick, args.out or (None if args.quick else FIGURES))
