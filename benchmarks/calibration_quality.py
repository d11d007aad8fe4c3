"""Fit quality of `klax-calibrate` against least-squares classical models.

Reproduces the figures of issue 11 (fit quality):

1. Treloar (uniaxial + equibiaxial trained, pure shear predicted):
   - the least-squares Ogden-3 reference (`klax.mechanics.fit_baseline`, 10
     starting points, the best kept);
   - `klax-calibrate --model ogden3` (the CLI's least-squares baseline);
   - the default `klax-calibrate` job for `--runs` base seeds (each run
     trains 5 seeds): R² per case, min / median / max over the runs, and the
     number of collapsed seeds (the CLI reports each one on stderr).
2. Synthetic data of known materials (exact stresses, uniaxial λ 1–6,
   equibiaxial λ 1–3.5 trained, pure shear λ 1–4 held out):
   Mooney–Rivlin C10 = 0.2, C01 = 0.02 MPa, and a 3-term Ogden model
   (μ = 0.63, 0.0012, −0.01 MPa; α = 1.3, 5, −2):
   - the least-squares baseline of the same family recovers the constants
     (largest relative error, from all three cases);
   - the default `klax-calibrate` job: R² of every curve, trained and held
     out.

Every PANN figure comes from running the CLI entry point
(`klax.mechanics.calibrate.main`) as a user would, with only `--seed`,
`--data` and `--out` set. Wall times are printed for orientation only; the
timing target is measured by `benchmarks/calibration_time.py`.

Run: `python benchmarks/calibration_quality.py [--runs 4]`.
"""

import argparse
import contextlib
import csv
import io
import os
import pathlib
import statistics
import tempfile
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import klax.mechanics as km  # noqa: E402
from klax.mechanics._calibration import evaluate_cases  # noqa: E402
from klax.mechanics.calibrate import main as calibrate_main  # noqa: E402

CASES = ("uniaxial", "equibiaxial", "pure_shear")
TRAIN = ["uniaxial", "equibiaxial"]
SYNTHETIC_TOP = {"uniaxial": 6.0, "equibiaxial": 3.5, "pure_shear": 4.0}


def cli(args: list[str]) -> tuple[dict[str, float], int, float]:
    """Run klax-calibrate; returns (R² by case, collapsed seeds, wall seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "run"
        err = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = calibrate_main([*args, "--quiet", "--no-plot", "--out", str(out)])
        wall = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"klax-calibrate {args} exited {code}: {err.getvalue()}")
        with open(out / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    r2 = {r["load_case"]: float(r["r2"]) for r in rows}
    return r2, err.getvalue().count("collapsed"), wall


def ls_r2(name: str, curves, starts: int = 10) -> tuple[dict[str, float], dict]:
    data = km.stress_data(curves, TRAIN)
    fits = km.fit_baseline(
        {"model": name}, data, list(range(starts)), base_key=jr.key(0), max_steps=500
    )
    model, _, _ = min(fits, key=lambda f: f[2])
    cases = [c for c in CASES if c in curves]
    predicted = evaluate_cases(model, cases, [curves[c].stretch for c in cases])
    r2 = {
        c: km.fit_metrics(curves[c].stress, p).r2
        for c, p in zip(cases, predicted, strict=True)
    }
    return r2, km.baseline_constants(model)


def synthetic(model) -> dict[str, km.LoadCurve]:
    lams = [np.linspace(1.0, SYNTHETIC_TOP[c], 20) for c in CASES]
    stresses = evaluate_cases(model, list(CASES), lams)
    return {
        c: km.LoadCurve(lam, p) for c, lam, p in zip(CASES, lams, stresses, strict=True)
    }


def write_csv(path: pathlib.Path, curves) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["load_case", "stretch", "nominal_stress_MPa"])
        for case, curve in curves.items():
            for lam, p in zip(curve.stretch, curve.stress, strict=True):
                writer.writerow([case, repr(float(lam)), repr(float(p))])


def summary(values: list[float]) -> str:
    return f"{min(values):.4f} / {statistics.median(values):.4f} / {max(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="base seeds (5 seeds each)")
    args = parser.parse_args()

    print("== Treloar: UT + ET trained, PS predicted ==")
    with jax.enable_x64(True):
        curves = km.read_curves()
        reference, constants = ls_r2("ogden3", curves)
    rounded = {k: round(v, 4) for k, v in reference.items()}
    print("least-squares Ogden-3 (10 starts):", rounded)
    print("  constants:", {k: float(f"{v:.6g}") for k, v in constants.items()})
    r2, _, wall = cli(["--model", "ogden3"])
    gap = max(abs(r2[c] - reference[c]) for c in CASES)
    print(f"klax-calibrate --model ogden3: {r2}")
    print(f"  largest |ΔR²| to the reference {gap:.1e}; {wall:.1f} s")
    per_case: dict[str, list[float]] = {c: [] for c in CASES}
    collapsed, walls = 0, []
    for seed in range(args.runs):
        r2, dead, wall = cli(["--seed", str(seed)])
        collapsed += dead
        walls.append(wall)
        for c in CASES:
            per_case[c].append(r2[c])
    print(f"default PANN, {args.runs} runs x 5 seeds, R² min / median / max:")
    for c in CASES:
        print(f"  {c:<12} {summary(per_case[c])}   (Ogden-3 LS {reference[c]:.4f})")
    print(f"  collapsed seeds: {collapsed} of {5 * args.runs}")
    print(f"  in-process wall per run: {summary(walls)} s")

    truths = {
        "mooney-rivlin": km.MooneyRivlin(0.2, 0.02),
        "ogden3": km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, truth in truths.items():
            print(f"== synthetic {name}: UT 1-6 + ET 1-3.5 trained, PS 1-4 held out ==")
            with jax.enable_x64(True):
                curves = synthetic(truth)
                data = km.stress_data(curves, list(CASES))
                fits = km.fit_baseline(
                    {"model": name}, data, [0, 1, 2], base_key=jr.key(0), max_steps=500
                )
                model = min(fits, key=lambda f: f[2])[0]
                fitted = km.baseline_constants(model)
                exact = km.baseline_constants(truth)
            error = max(abs(fitted[k] - exact[k]) / abs(exact[k]) for k in exact)
            print(f"least-squares {name}: largest relative error {error:.1e}")
            path = pathlib.Path(tmp) / f"{name}.csv"
            write_csv(path, curves)
            r2s = {c: [] for c in CASES}
            for seed in range(max(args.runs // 2, 1)):
                r2, dead, _ = cli(["--data", str(path), "--seed", str(seed)])
                for c in CASES:
                    r2s[c].append(r2[c])
            for c in CASES:
                print(f"  default PANN {c:<12} R² min / median / max {summary(r2s[c])}")


if __name__ == "__main__":
    main()
