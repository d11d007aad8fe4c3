"""Automated model discovery: a sparse CANN finds a hyperelastic law.

A constitutive artificial neural network (Linka & Kuhl 2023),
`klax.mechanics.CANN`, writes the strain-energy density as a weighted sum of
12 classical terms: the shifted invariants (Ī1 − 3) and (Ī2 − 3), to the powers
1 and 2, through the identity, exp(w x) − 1 and −ln(1 − w x), with
non-negative weights, so that every term and the sum are polyconvex. An L1
penalty, applied as an exact proximal step inside Adam (`sparse_adam`), sets
most weights exactly to zero. A whole regularisation path, 16 strengths plus
the unregularised fit, is trained as one ensemble in one compiled program;
each member's surviving terms are refined by least squares; the selection
rule keeps the sparsest member whose R² on every curve is within 0.002 of the
best. The law is printed as a formula, written as JSON, parsed back and
checked against the model. The same pipeline then recovers a known two-term
law from synthetic data.

Run: `python examples/model_discovery.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure

import klax.mechanics as km
from klax.mechanics._calibration import evaluate_cases

jax.config.update("jax_enable_x64", True)
FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"
TRAIN = ["uniaxial", "equibiaxial"]
TEST = ["pure_shear"]
CASES = TRAIN + TEST


# %% [markdown]
# One function runs the whole pipeline on a set of load curves: the CANN
# (inputs scaled by their range on the training data, energy scaled by the
# largest strain energy reached in the data), the path, the polish, the table
# and the selection.


# %%
def discover(curves, steps, n_strengths, key):
    data = km.stress_data(curves, TRAIN)
    model = km.CANN(
        input_scale=km.invariant_scales(curves, TRAIN, "isochoric"),
        energy_scale=km.data_energy_scale(curves, TRAIN),
        key=key,
    )
    strengths = np.append(km.path_strengths(model, data, n_strengths), 0.0)
    start = time.perf_counter()
    path = km.regularisation_path(
        model, data, strengths, steps=steps, learning_rate=1e-2, key=jr.key(1)
    )
    print(f"path of {len(strengths)} strengths: {time.perf_counter() - start:.1f} s")
    polished = [km.polish(path.member(i), data) for i in range(len(strengths))]
    rows = km.path_table(path, curves, TRAIN, TEST, models=polished)
    chosen = km.select_member(rows, tolerance=0.002)
    return path, polished, rows, chosen


def synthetic_curves():
    """Stresses of W = 2 MPa·[exp(0.0272 (Ī1 − 3)) − 1] + 0.0013 MPa·(Ī2 − 3)."""
    treloar = km.read_curves()
    law = km.parse_formula("W = 2 MPa·[exp(0.0272 (Ī1 − 3)) − 1] + 0.0013 MPa·(Ī2 − 3)")
    stress = eqx.filter_jit(
        lambda lam: [km.nominal_stress_11(law, c, lam[c]) for c in CASES]
    )({c: jnp.asarray(treloar[c].stretch) for c in CASES})
    curves = {
        c: km.LoadCurve(treloar[c].stretch, np.asarray(s))
        for c, s in zip(CASES, stress, strict=True)
    }
    return law, curves


# %%
def main(quick: bool, out: pathlib.Path | None) -> None:
    steps, n_strengths = (200, 5) if quick else (5000, 16)
    treloar = km.read_curves()
    path, polished, rows, chosen = discover(treloar, steps, n_strengths, jr.key(0))
    print(km.format_path_table(rows))
    law = km.discovered_law(polished[chosen])
    row = rows[chosen]
    print(f"selected: strength {row['strength']:.3g}, terms {row['terms']}")
    print(law.formula(4))

    # The formula, parsed back, reproduces the model's stresses.
    parsed = km.parse_formula(law.formula())
    lam = {c: treloar[c].stretch for c in CASES}
    from_model = evaluate_cases(polished[chosen], CASES, [lam[c] for c in CASES])
    from_text = evaluate_cases(parsed, CASES, [lam[c] for c in CASES])
    worst = max(
        float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))
        for a, b in zip(from_model, from_text, strict=True)
    )
    print(f"parsed formula vs model: largest relative stress difference {worst:.1e}")

    # A known law inside the library: the path finds its two terms.
    truth, synthetic = synthetic_curves()
    _, s_polished, s_rows, s_chosen = discover(synthetic, steps, n_strengths, jr.key(0))
    found = km.discovered_law(s_polished[s_chosen])
    print("true law:      ", truth.formula(6))
    print("recovered law: ", found.formula(6))

    fig = Figure(figsize=(14, 7.4), layout="constrained")
    axes = fig.subplots(2, 3)
    strengths = np.array([r["strength"] for r in rows])
    positive = strengths > 0
    ax = axes[0, 0]
    for c in CASES:
        r2 = np.array([r["r2"][c] for r in rows])
        ax.semilogx(strengths[positive], r2[positive], "o-", ms=3, label=f"R² {c}")
    ax.set(xlabel="strength λ", ylabel="R²", ylim=(0.8, 1.001))
    twin = ax.twinx()
    active = np.array([r["active"] for r in rows])
    twin.semilogx(strengths[positive], active[positive], "k--", label="active terms")
    twin.set(ylabel="active terms")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Regularisation path (Treloar, polished)")

    ax = axes[0, 1]
    error = np.array([1.0 - r["r2"]["pure_shear"] for r in rows])
    train_error = np.array([1.0 - min(r["r2"][c] for c in TRAIN) for r in rows])
    ax.semilogy(active, np.maximum(error, 1e-6), "o", label="held out (pure shear)")
    ax.semilogy(active, np.maximum(train_error, 1e-6), "x", label="worst training")
    ax.semilogy(active[chosen], max(error[chosen], 1e-6), "r*", ms=14, label="selected")
    ax.set(xlabel="active terms", ylabel="1 − R²", title="Pareto front")
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    s_active = np.array([r["active"] for r in s_rows])
    s_error = np.array([1.0 - min(r["r2"].values()) for r in s_rows])
    ax.semilogy(s_active, np.maximum(s_error, 1e-16), "o")
    ax.semilogy(s_active[s_chosen], max(s_error[s_chosen], 1e-16), "r*", ms=14)
    ax.set(xlabel="active terms", ylabel="1 − worst R²")
    ax.set_title("Synthetic two-term law: Pareto front")

    W = polished[chosen]
    for ax, c in zip(axes[1], CASES, strict=True):
        grid = np.linspace(1.0, 1.05 * treloar[c].stretch.max(), 200)
        (P,) = evaluate_cases(W, [c], [grid])
        split = "train" if c in TRAIN else "test"
        ax.plot(
            treloar[c].stretch,
            treloar[c].stress,
            "ko",
            ms=4,
            mfc="none",
            label="Treloar (1944)",
        )
        ax.plot(grid, P, "C3-", label=f"discovered ({rows[chosen]['active']} terms)")
        ax.set(xlabel="$\\lambda_1$", ylabel="$P_{11}$ / MPa")
        ax.set_title(f"{c} ({split}), $R^2$ = {rows[chosen]['r2'][c]:.4f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(law.formula(3), fontsize=9)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "model_discovery.png", dpi=100)
        (out / "model_discovery_law.json").write_text(
            json.dumps(law.to_json(), indent=2, ensure_ascii=False) + "\n"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="where to save the figure (default: docs/examples/figures for a full "
        "run; not saved with --quick)",
    )
    args = parser.parse_args()
    main(args.quick, args.out or (None if args.quick else FIGURES))
