"""Calibrating a hyperelastic potential to Treloar's rubber data.

A physics-augmented neural network (PANN) for an incompressible isotropic
material: the strain-energy density is an input-convex network of the two
polyconvex isochoric invariants,

    W(F) = w [f(x(F)) - f(0)],   x = ((Ĩ1 - 3) / s1, (Ĩ2 - 3^(3/2)) / s2),

with f convex and non-decreasing in both inputs (`klax.nn.FICNN` with
`non_decreasing=True`), so W is polyconvex, objective, isotropic and zero in
the reference state by construction. The nominal stress of each homogeneous
load case follows by automatic differentiation (`klax.mechanics`). The model
is calibrated on uniaxial and equibiaxial tension and predicts pure shear.

Run: `python examples/treloar.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import csv
import importlib.resources
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from matplotlib.figure import Figure

import klax
from klax.mechanics import nominal_stress_11, polyconvex_isochoric_invariants

jax.config.update("jax_enable_x64", True)  # calibrate in float64
FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"
TRAIN = ("uniaxial", "equibiaxial")
TEST = ("pure_shear",)
S1, S2 = 10.0, 100.0  # scales of the shifted invariants
ENERGY_SCALE = 0.1  # MPa


# %% [markdown]
# Treloar's data ships with klax: one row per measurement, with the load case,
# the stretch λ and the nominal stress P11 in MPa.


# %%
def load_treloar() -> dict[str, tuple[jax.Array, jax.Array]]:
    path = importlib.resources.files("klax") / "data" / "treloar.csv"
    rows: dict[str, list[tuple[float, float]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            point = (float(row["stretch"]), float(row["nominal_stress_MPa"]))
            rows.setdefault(row["load_case"], []).append(point)
    return {
        case: (jnp.array([s for s, _ in pts]), jnp.array([p for _, p in pts]))
        for case, pts in rows.items()
    }


# %% [markdown]
# The potential. The invariants are shifted so that the reference state maps
# to x = 0 and divided by fixed scales s1, s2 so that the inputs of the network
# are of order one over the measured range (Ĩ2 reaches several thousand in
# equibiaxial tension); the output is multiplied by w = 0.1 MPa, the order of
# the initial shear modulus. Positive scalings and shifts keep convexity and
# monotonicity, and subtracting f(0) makes W(I) = 0 hold exactly, at every
# training step.


# %%
class IncompressiblePANN(eqx.Module):
    icnn: klax.nn.FICNN

    def __init__(self, width: int, *, key):
        self.icnn = klax.nn.FICNN(2, "scalar", [width], non_decreasing=True, key=key)

    def __call__(self, F):
        I1, I2 = polyconvex_isochoric_invariants(F)
        x = jnp.stack([(I1 - 3.0) / S1, (I2 - 3.0**1.5) / S2])
        return ENERGY_SCALE * (self.icnn(x) - self.icnn(jnp.zeros_like(x)))


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


def r2(pred, target):
    return 1.0 - jnp.sum((pred - target) ** 2) / jnp.sum((target - target.mean()) ** 2)


# %%
def main(quick: bool, out: pathlib.Path) -> None:
    steps = 100 if quick else 10_000
    data = load_treloar()
    train = {case: data[case] for case in TRAIN}
    model = IncompressiblePANN(8, key=jr.key(0))
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

    fig = Figure(figsize=(13, 3.4), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, case in zip(axes[:-1], TRAIN + TEST, strict=True):
        lam, P = data[case]
        split = "train" if case in TRAIN else "test"
        score = r2(nominal_stress_11(W, case, lam), P)
        print(f"{case:>12} ({split}): R² = {score:.4f}")
        grid = jnp.linspace(1.0, 1.05 * lam.max(), 200)
        ax.plot(lam, P, "ko", ms=4, mfc="none", label="Treloar (1944)")
        ax.plot(grid, nominal_stress_11(W, case, grid), "C0-", label="PANN")
        ax.set(xlabel="$\\lambda_1$", ylabel="$P_{11}$ / MPa")
        ax.set_title(f"{case} ({split}), $R^2$ = {score:.3f}")
        ax.legend(loc="upper left")
    history.plot(ax=axes[-1])
    axes[-1].set(xlabel="Step", yscale="log", title="Training loss")
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "treloar.png", dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only")
    parser.add_argument("--out", type=pathlib.Path, default=FIGURES)
    args = parser.parse_args()
    main(args.quick, args.out)
