"""A calibrated PANN in the finite-element code FElupe.

An incompressible PANN (`klax.mechanics.IncompressiblePANN`) is calibrated on
Treloar's uniaxial and equibiaxial data, turned into a FElupe material with
`klax.mechanics.felupe_material` (stress and tangent by automatic
differentiation, float64) and used in two finite-element problems:

1. a cube in uniaxial tension: its deformation is homogeneous, so the FE
   reaction force per undeformed area must equal klax's homogeneous nominal
   stress (up to the penalty error of the nearly-incompressible formulation);
2. a plate with a hole stretched to 100 % (plane strain): an inhomogeneous
   stress field, solved on two meshes.

Needs the `fe` extra: `pip install "klax[fe]"`.
Run: `python examples/finite_elements.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib

import jax
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import klax
from klax.mechanics import (
    calibrate_seeds,
    fe_plate_with_hole,
    fe_uniaxial_check,
    fit_metrics,
    invariant_scales,
    read_curves,
)

FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"
TRAIN = ["uniaxial", "equibiaxial"]


# %%
def calibrate(quick: bool):
    """A PANN on Treloar's UT + ET data: the klax-calibrate defaults, fewer seeds."""
    curves = read_curves()
    config = dict(
        model="pann",
        width_sizes=[8],
        invariants="polyconvex",
        input_scale=list(invariant_scales(curves, TRAIN, "polyconvex")),
    )
    best, _ = calibrate_seeds(
        config,
        curves,
        train_cases=TRAIN,
        seeds=1 if quick else 3,
        base_seed=0,
        steps=400 if quick else 20_000,
        learning_rate=2e-2 if quick else 2e-3,
        batch_size=64 if quick else 32,
        verbose=0,
        max_restarts=0 if quick else 2,
    )
    return curves, klax.finalize(best.model)


# %%
def main(quick: bool, out: pathlib.Path | None) -> None:
    curves, W = calibrate(quick)
    mu0 = float(W.initial_shear_modulus())
    # FElupe's nearly-incompressible formulation: W(F) + K/2 (J̄ - 1)² + p (J - J̄)
    # with a bulk modulus K far above the shear modulus (the penalty).
    bulk = 5000.0 * mu0
    print(f"initial shear modulus {mu0:.4f} MPa, bulk modulus K = {bulk:.1f} MPa")

    # 1. The FE cube against the homogeneous uniaxial load case.
    data = curves["uniaxial"]
    stretch = np.linspace(1.0, float(data.stretch.max()), 28)[1:]
    cube = fe_uniaxial_check(W, stretch, bulk_modulus=bulk)
    r2 = fit_metrics(data.stress, np.interp(data.stretch, stretch, cube.fe_stress))
    print(
        f"FE cube: largest relative deviation from the homogeneous P11 "
        f"{cube.relative_deviation:.2e}; R² of the FE curve on the data {r2.r2:.4f}"
    )

    # 2. The plate with a hole, stretched to 100 %, on a coarse and a fine mesh.
    plate_stretch = np.linspace(1.1, 2.0, 10)
    meshes = (2, 4) if quick else (4, 12)
    plates = [
        fe_plate_with_hole(W, plate_stretch, bulk_modulus=bulk, cells=c) for c in meshes
    ]
    for plate in plates:
        print(
            f"plate, {len(plate.cells)} elements: force at 100 % "
            f"{plate.force[-1]:.4f} N/mm; Newton iterations per step "
            f"{list(plate.iterations)}; last residual norms "
            f"{', '.join(f'{v:.1e}' for v in plate.residual_norms[-1])}"
        )

    fig = Figure(figsize=(13, 4), layout="constrained")
    ax_cube, ax_plate, ax_mesh = fig.subplots(1, 3)
    ax_cube.plot(data.stretch, data.stress, "ko", ms=4, mfc="none", label="Treloar")
    ax_cube.plot(stretch, cube.homogeneous_stress, "C0-", label="homogeneous (klax)")
    ax_cube.plot(stretch, cube.fe_stress, "C1.", ms=6, label="FE cube (FElupe)")
    ax_cube.set(xlabel="$\\lambda$", ylabel="$P_{11}$ / MPa")
    ax_cube.set_title(
        f"uniaxial, K = 5000 μ0: FE vs homogeneous {cube.relative_deviation:.1e}"
    )
    ax_cube.legend(loc="upper left")

    for plate in plates:
        ax_plate.plot(
            plate.stretch, plate.force, "o-", ms=3, label=f"{len(plate.cells)} elements"
        )
    ax_plate.set(xlabel="plate stretch", ylabel="force / thickness (N/mm)")
    ax_plate.set_title("plate with a hole: mesh refinement")
    ax_plate.legend(loc="upper left")

    fine = plates[-1]
    s = fine.cauchy
    mean = np.trace(s, axis1=1, axis2=2) / 3.0
    deviator = s - mean[:, None, None] * np.eye(3)
    von_mises = np.sqrt(1.5 * np.sum(deviator * deviator, axis=(1, 2)))
    cells = PolyCollection(
        fine.points[fine.cells], array=von_mises, cmap="viridis", edgecolor="k"
    )
    cells.set_linewidth(0.2)
    ax_mesh.add_collection(cells)
    ax_mesh.autoscale_view()
    ax_mesh.set_aspect("equal")
    ax_mesh.set(xlabel="x", ylabel="y", title="deformed quarter plate at 100 %")
    fig.colorbar(cells, ax=ax_mesh, label="von Mises Cauchy stress / MPa")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "finite_elements.png", dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short training")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="where to save the figure (default: docs/examples/figures for a full "
        "run; not saved with --quick)",
    )
    args = parser.parse_args()
    with jax.enable_x64(True):  # calibrate and post-process in float64
        main(args.quick, args.out or (None if args.quick else FIGURES))
