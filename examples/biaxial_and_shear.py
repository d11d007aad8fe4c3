"""Calibrating to general biaxial data and to shear + compression data in kPa.

Two small data files in the long format of `klax-calibrate`, both generated
from a known incompressible Mooney–Rivlin material (exact stresses, rounded to
four significant digits), so the fit can be checked against the truth:

- `biaxial_mooney_rivlin.csv`: Kawabata-type general biaxial tension, C10 =
  0.2 MPa, C01 = 0.02 MPa. For each held stretch λ1 ∈ {1.5, 2, 2.5, 3}, λ2
  sweeps from the uniaxial value λ1^(-1/2) (where P22 = 0) to λ1; both
  nominal stresses P11 and P22 are recorded in MPa.
- `tissue_shear_compression_kPa.csv`: a soft material, C10 = 1.2 kPa, C01 =
  0.4 kPa: uniaxial compression and tension (λ = 0.85 … 1.15) and simple
  shear (γ = 0 … 0.2) with the shear stress P12 and the normal stress P22 on
  the sheared plates (σ33 = 0), stresses in kPa.

The script writes both files (to `docs/examples/data/`, or to `--out` with
`--quick`), then runs `klax-calibrate` on each: the biaxial curves at λ1 =
1.5, 2.5 and 3 are trained on and λ1 = 2 is held out; the soft material is
trained on compression/tension and predicts simple shear.

Run: `python examples/biaxial_and_shear.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib
import shutil

import numpy as np

from klax.mechanics.calibrate import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "docs/examples/data"
FIGURES = ROOT / "docs/examples/figures"


def mooney_rivlin_biaxial(c10, c01, lam1, lam2):
    """Exact (P11, P22) of incompressible biaxial tension (spec (f))."""
    lam3 = 1.0 / (lam1 * lam2)
    p11 = 2 * (lam1 - lam3**2 / lam1) * (c10 + lam2**2 * c01)
    p22 = 2 * (lam2 - lam3**2 / lam2) * (c10 + lam1**2 * c01)
    return p11, p22


def sig(x):
    """Four significant digits; round-off below 1e-12 is written as 0."""
    x = float(x)
    return "0" if abs(x) < 1e-12 else f"{x:.4g}"


def biaxial_file() -> str:
    lines = ["load_case,stretch_1,stretch_2,nominal_stress_1_MPa,nominal_stress_2_MPa"]
    for lam1 in (1.5, 2.0, 2.5, 3.0):
        for lam2 in np.linspace(lam1**-0.5, lam1, 8):
            lam2 = float(sig(lam2))  # the stresses belong to the written stretch
            p11, p22 = mooney_rivlin_biaxial(0.2, 0.02, lam1, lam2)
            lines.append(f"biaxial,{lam1},{sig(lam2)},{sig(p11)},{sig(max(p22, 0.0))}")
    return "\n".join(lines) + "\n"


def tissue_file() -> str:
    c10, c01 = 1.2, 0.4  # kPa
    lines = [
        "load_case,stretch,shear,nominal_stress_kPa,shear_stress_kPa,"
        "nominal_stress_2_kPa"
    ]
    for lam in np.linspace(0.85, 1.15, 13):
        lam = float(sig(lam))
        p11, _ = mooney_rivlin_biaxial(c10, c01, lam, lam**-0.5)
        lines.append(f"uniaxial,{sig(lam)},,{sig(p11)},,")
    for gamma in np.linspace(0.0, 0.2, 9):
        gamma = float(sig(gamma))
        p12 = 2 * gamma * (c10 + c01)
        p22 = -2 * gamma**2 * c01
        lines.append(f"simple_shear,,{sig(gamma)},,{sig(p12)},{sig(p22)}")
    return "\n".join(lines) + "\n"


# %%
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    data = args.out if args.quick and args.out else DATA
    figures = args.out or FIGURES
    runs = (args.out or ROOT / "calibration") / "biaxial_and_shear_runs"
    data.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    biaxial = data / "biaxial_mooney_rivlin.csv"
    tissue = data / "tissue_shear_compression_kPa.csv"
    biaxial.write_text(biaxial_file())
    tissue.write_text(tissue_file())
    steps = ["--steps", "100", "--seeds", "1", "--quiet"] if args.quick else []
    common = [*steps, "--overwrite"]
    code = main(
        [
            "--data",
            str(biaxial),
            "--train",
            "biaxial@1.5,biaxial@2.5,biaxial@3",
            "--test",
            "biaxial@2",
            "--out",
            str(runs / "biaxial"),
            *common,
        ]
    )
    assert code == 0, code
    code = main(
        [
            "--data",
            str(tissue),
            "--train",
            "uniaxial",
            "--test",
            "simple_shear",
            "--out",
            str(runs / "tissue"),
            *common,
        ]
    )
    assert code == 0, code
    shutil.copy(runs / "biaxial" / "fit.png", figures / "biaxial_and_shear.png")
    shutil.copy(runs / "tissue" / "fit.png", figures / "shear_compression_kPa.png")
