"""Fit quality of `klax-calibrate` against least-squares classical models.

Reproduces the figures of issue 11 (fit quality):

1. Treloar (uniaxial + equibiaxial trained, pure shear predicted):
   - the least-squares Ogden-3 reference (`klax.mechanics.fit_baseline`, 10
     starting points, the best kept);
   - `klax-calibrate --model ogden3` (the CLI's least-squares baseline);
   - the default `klax-calibrate` job for `--runs` base seeds (each run
     trains 5 seeds): R² per case, min / median / max over the runs, and the
     number of collapsed seeds (the CLI reports each one on stderr).
2. Synthetic data of known materials, for every load case and stress unit
   of the data layer. Six materials: a Mooney–Rivlin and a 3-term Ogden
   model each for a rubber (MPa), a soft tissue (kPa) and a hydrogel (Pa),
   with stretch ranges typical of such tests. Their exact stresses (x64,
   the library's own load-case functions) are written, in the material's
   unit, to a CSV in the documented long format: uniaxial compression and
   tension, equibiaxial, pure shear, general biaxial (three held `λ1`,
   `λ2` swept from the uniaxial to the equibiaxial state, `P11` and `P22`)
   and simple shear (`P12` and the normal stresses `P11`, `P22`, `σ33 = 0`).
   Trained: uniaxial, equibiaxial and the outer two biaxial curves; held
   out: the middle biaxial curve, pure shear and simple shear.
   - `klax-calibrate --model mooney-rivlin` / `--model ogden3` (the
     least-squares baseline of the material's family, same split): the
     largest relative error of its constants (`model.json`) against the
     truth (Ogden terms matched by exponent); above 1e-6 it is rerun with
     `--refine-steps 5000` and both errors are shown;
   - the default `klax-calibrate` job (only `--data`, `--train`, `--test`,
     `--out` and `--seed` set): R² of every curve and stress component,
     trained and held out, min / median / max over the base seeds.
3. `--section ogden-rubber`: the synthetic rubber Ogden case of the issue (uniaxial
   λ 1–6 and equibiaxial λ 1–3.5 trained, pure shear λ 1–4 held out).

Every figure comes from running the CLI entry point
(`klax.mechanics.calibrate.main`) as a user would. Wall times are printed
for orientation only; the timing target is measured by
`benchmarks/calibration_time.py`.

Run: `python benchmarks/calibration_quality.py [--runs 4] [--quick]
[--section treloar|synthetic|ogden-rubber|all]`; `--quick` runs one base
seed per case (about a third of the time).
"""

import argparse
import contextlib
import csv
import io
import json
import os
import pathlib
import statistics
import tempfile
import time
from typing import Any, NamedTuple

os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import klax.mechanics as km  # noqa: E402
from klax.mechanics._calibration import evaluate_cases  # noqa: E402
from klax.mechanics._data import UNITS  # noqa: E402
from klax.mechanics.calibrate import main as calibrate_main  # noqa: E402

CASES = ("uniaxial", "equibiaxial", "pure_shear")
TRAIN = ["uniaxial", "equibiaxial"]


class Run(NamedTuple):
    """One klax-calibrate run: metrics rows, model.json, stderr, wall seconds."""

    rows: list[dict[str, str]]
    config: dict[str, Any]
    stderr: str
    wall: float

    def r2(self) -> dict[tuple[str, str], float]:
        """R² by (curve name, split); the name as `curve_r2` writes it."""
        out = {}
        for r in self.rows:
            name = r["curve"]
            if not (r["load_case"] in CASES and r["component"] == "P11"):
                name = f"{name} {r['component']}"
            out[(name, r["split"])] = float(r["r2"])
        return out


def cli(args: list[str]) -> Run:
    """Run klax-calibrate in this process (quiet, no plot) and read its outputs."""
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
        config = json.loads((out / "model.json").read_text())
    return Run(rows, config, err.getvalue(), wall)


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


def summary(values: list[float], digits: int = 4) -> str:
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{lo:.{digits}f} / {mid:.{digits}f} / {hi:.{digits}f}"


# ---------------------------------------------------------------------------
# 1. Treloar


def treloar(runs: int) -> None:
    print("== Treloar: UT + ET trained, PS predicted ==")
    with jax.enable_x64(True):
        curves = km.read_curves()
        reference, constants = ls_r2("ogden3", curves)
    rounded = {k: round(v, 4) for k, v in reference.items()}
    print("least-squares Ogden-3 (10 starts):", rounded)
    print("  constants:", {k: float(f"{v:.6g}") for k, v in constants.items()})
    run = cli(["--model", "ogden3"])
    r2 = {name: v for (name, _), v in run.r2().items()}
    gap = max(abs(r2[c] - reference[c]) for c in CASES)
    print(f"klax-calibrate --model ogden3: {r2}")
    print(f"  largest |ΔR²| to the reference {gap:.1e}; {run.wall:.1f} s")
    per_case: dict[str, list[float]] = {c: [] for c in CASES}
    collapsed, walls = 0, []
    for seed in range(runs):
        run = cli(["--seed", str(seed)])
        collapsed += run.stderr.count("collapsed")
        walls.append(run.wall)
        r2 = {name: v for (name, _), v in run.r2().items()}
        for c in CASES:
            per_case[c].append(r2[c])
    print(f"default PANN, {runs} runs x 5 seeds, R² min / median / max:")
    for c in CASES:
        print(f"  {c:<12} {summary(per_case[c])}   (Ogden-3 LS {reference[c]:.4f})")
    print(f"  collapsed seeds: {collapsed} of {5 * runs}")
    print(f"  in-process wall per run: {summary(walls)} s")


# ---------------------------------------------------------------------------
# 2. Synthetic data of every load case and unit


class Tests(NamedTuple):
    """The ranges of a material's tests.

    `uniaxial`: (lowest, highest) λ (compression below 1); `equibiaxial`,
    `pure_shear`: highest λ; `biaxial`: the three held λ1 (the middle one is
    held out); `simple_shear`: the largest γ.
    """

    uniaxial: tuple[float, float]
    equibiaxial: float
    pure_shear: float
    biaxial: tuple[float, float, float]
    simple_shear: float


class Material(NamedTuple):
    """A known material (constants in MPa, the baseline family) and its tests."""

    name: str
    unit: str
    family: str
    model: Any
    tests: Tests


def materials() -> list[Material]:
    kPa, Pa = UNITS["kPa"], UNITS["Pa"]
    rubber = Tests(
        uniaxial=(0.6, 6.0),
        equibiaxial=3.5,
        pure_shear=4.0,
        biaxial=(1.5, 2.25, 3.0),
        simple_shear=2.5,
    )
    tissue = Tests(
        uniaxial=(0.7, 1.3),
        equibiaxial=1.2,
        pure_shear=1.25,
        biaxial=(1.1, 1.2, 1.3),
        simple_shear=0.6,
    )
    gel = Tests(
        uniaxial=(0.7, 2.5),
        equibiaxial=1.8,
        pure_shear=2.0,
        biaxial=(1.25, 1.5, 1.75),
        simple_shear=1.2,
    )
    return [
        Material(
            "rubber Mooney-Rivlin", "MPa", "mooney-rivlin",
            km.MooneyRivlin(0.2, 0.02), rubber,
        ),
        Material(
            "rubber Ogden", "MPa", "ogden3",
            km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0]), rubber,
        ),
        Material(
            "tissue Mooney-Rivlin", "kPa", "mooney-rivlin",
            km.MooneyRivlin(1.0 * kPa, 0.25 * kPa), tissue,
        ),
        Material(
            "tissue Ogden", "kPa", "ogden3",
            km.Ogden([1.6 * kPa, 0.05 * kPa, -0.6 * kPa], [2.2, 7.0, -3.0]), tissue,
        ),
        Material(
            "hydrogel Mooney-Rivlin", "Pa", "mooney-rivlin",
            km.MooneyRivlin(300 * Pa, 60 * Pa), gel,
        ),
        Material(
            "hydrogel Ogden", "Pa", "ogden3",
            km.Ogden([450 * Pa, 8 * Pa, -40 * Pa], [1.6, 6.0, -2.5]), gel,
        ),
    ]  # fmt: skip


def held(lam1: float) -> str:
    return f"biaxial@{lam1:g}"


def split(material: Material) -> tuple[str, str]:
    """(--train, --test) of a synthetic material."""
    a, b, c = material.tests.biaxial
    return (
        f"uniaxial,equibiaxial,{held(a)},{held(c)}",
        f"{held(b)},pure_shear,simple_shear",
    )


COLUMNS = (
    "load_case",
    "stretch",
    "nominal_stress",
    "stretch_1",
    "stretch_2",
    "nominal_stress_1",
    "nominal_stress_2",
    "shear",
    "shear_stress",
)


def synthetic_rows(material: Material, n: int = 13) -> list[dict[str, float | str]]:
    """The exact stresses of every test of `material` (in its unit), one row each.

    Computed in float64 with the library's AD load-case functions
    (`nominal_stress_11`, `biaxial_nominal_stress`,
    `simple_shear_nominal_stress`).
    """
    W, scale, tests = material.model, UNITS[material.unit], material.tests
    rows: list[dict[str, float | str]] = []

    def add(case, **values):
        rows.append({"load_case": case, **{k: float(v) for k, v in values.items()}})

    lo, hi = tests.uniaxial
    stretches = {
        "uniaxial": np.concatenate(
            [np.linspace(lo, 1.0, n // 2 + 1)[:-1], np.linspace(1.0, hi, n)]
        ),
        "equibiaxial": np.linspace(1.0, tests.equibiaxial, n),
        "pure_shear": np.linspace(1.0, tests.pure_shear, n),
    }
    for case, lam in stretches.items():
        P11 = np.asarray(km.nominal_stress_11(W, case, jnp.asarray(lam)))
        for a, p in zip(lam, P11, strict=True):
            add(case, stretch=a, nominal_stress=p / scale)
    for lam1 in tests.biaxial:
        lam2 = np.linspace(lam1**-0.5, lam1, n)
        P11, P22 = km.biaxial_nominal_stress(W, jnp.full(n, lam1), jnp.asarray(lam2))
        for b, p, q in zip(lam2, np.asarray(P11), np.asarray(P22), strict=True):
            add(
                "biaxial",
                stretch_1=lam1,
                stretch_2=b,
                nominal_stress_1=p / scale,
                nominal_stress_2=q / scale,
            )
    gamma = np.linspace(0.0, tests.simple_shear, n)
    P11, P22, P12 = km.simple_shear_nominal_stress(W, jnp.asarray(gamma))
    for g, p, q, s in zip(
        gamma, np.asarray(P11), np.asarray(P22), np.asarray(P12), strict=True
    ):
        add(
            "simple_shear",
            shear=g,
            shear_stress=s / scale,
            nominal_stress_1=p / scale,
            nominal_stress_2=q / scale,
        )
    return rows


def write_rows(path: pathlib.Path, rows: list[dict], unit: str) -> None:
    """Write rows in the long format, stress columns suffixed with `unit`."""
    header = [c if "stress" not in c else f"{c}_{unit}" for c in COLUMNS]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(
                [repr(row[c]) if c in row and c != "load_case" else row.get(c, "")
                 for c in COLUMNS]
            )  # fmt: skip


def constants_error(fitted: dict[str, float], truth: Any) -> float:
    """Largest relative error of fitted constants (Ogden terms matched by exponent)."""
    exact = km.baseline_constants(truth)
    if isinstance(truth, km.Ogden):
        terms = truth.num_terms

        def pairs(c):
            return sorted((c[f"alpha_{p + 1}"], c[f"mu_{p + 1}"]) for p in range(terms))

        return max(
            max(abs(fa - ea) / abs(ea), abs(fm - em) / abs(em))
            for (fa, fm), (ea, em) in zip(pairs(fitted), pairs(exact), strict=True)
        )
    return max(abs(fitted[k] - exact[k]) / abs(exact[k]) for k in exact)


LONG_LS = ["--refine-steps", "5000"]


def synthetic(seeds: int, tmp: pathlib.Path) -> list[str]:
    """Section 2; returns the one-line verdicts."""
    verdicts = []
    with jax.enable_x64(True):  # the true constants in float64
        known = materials()
    for material in known:
        train, test = split(material)
        with jax.enable_x64(True):
            rows = synthetic_rows(material)
        path = tmp / f"{material.name.replace(' ', '_')}_{material.unit}.csv"
        write_rows(path, rows, material.unit)
        common = ["--data", str(path), "--train", train, "--test", test]
        print(f"== synthetic {material.name} ({material.unit}) ==")
        print(f"   {len(rows)} rows; --train {train} --test {test}")
        baseline = cli(["--model", material.family, *common])
        error = constants_error(baseline.config["constants"], material.model)
        base_r2 = baseline.r2()
        print(
            f"   least squares --model {material.family}: largest relative error "
            f"of the constants {error:.1e} ({baseline.wall:.0f} s); "
            f"min R² {min(base_r2.values()):.6f}"
        )
        if error > 1e-6:  # not converged in the default steps? solve to the end
            longer = cli(["--model", material.family, *common, *LONG_LS])
            error_long = constants_error(longer.config["constants"], material.model)
            print(
                f"   ... with {' '.join(LONG_LS)}: {error_long:.1e} "
                f"({longer.wall:.0f} s)"
            )
            ls_text = f"{error:.1e} ({error_long:.1e} with {' '.join(LONG_LS)})"
        else:
            ls_text = f"{error:.1e}"
        per_curve: dict[tuple[str, str], list[float]] = {}
        walls = []
        for seed in range(seeds):
            run = cli([*common, "--seed", str(seed)])
            walls.append(run.wall)
            for key, value in run.r2().items():
                per_curve.setdefault(key, []).append(value)
        print(
            f"   default PANN, {seeds} base seed(s) x 5 seeds, R² min / median / max:"
        )
        for (name, part), values in per_curve.items():
            flag = "" if min(values) >= 0.999 else "   < 0.999"
            print(f"     {name:<20} {part:<5} {summary(values, 5)}{flag}")
        print(f"   in-process wall per run: {summary(walls)} s")
        worst = {
            s: min(min(v) for (_, p), v in per_curve.items() if p == s)
            for s in ("train", "test")
        }
        verdicts.append(
            f"{material.name:<24} {material.unit:<4} LS rel. error {ls_text}  "
            f"PANN worst R² trained {worst['train']:.5f}, held out {worst['test']:.5f}"
        )
    return verdicts


# ---------------------------------------------------------------------------
# 3. The rubber Ogden case (one-stretch curves only)


def ogden_rubber(seeds: int, tmp: pathlib.Path) -> None:
    print("== synthetic rubber Ogden: UT 1-6 + ET 1-3.5 trained, PS 1-4 held out ==")
    truth = km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0])
    tops = {"uniaxial": 6.0, "equibiaxial": 3.5, "pure_shear": 4.0}
    rows = []
    with jax.enable_x64(True):
        for case, top in tops.items():
            lam = np.linspace(1.0, top, 20)
            P11 = np.asarray(km.nominal_stress_11(truth, case, jnp.asarray(lam)))
            rows += [
                {"load_case": case, "stretch": float(a), "nominal_stress": float(p)}
                for a, p in zip(lam, P11, strict=True)
            ]
    path = tmp / "ogden_rubber.csv"
    write_rows(path, rows, "MPa")
    per_case: dict[str, list[float]] = {c: [] for c in CASES}
    for seed in range(seeds):
        r2 = {
            name: v
            for (name, _), v in cli(["--data", str(path), "--seed", str(seed)])
            .r2()
            .items()
        }
        for c in CASES:
            per_case[c].append(r2[c])
    for c in CASES:
        print(
            f"   default PANN {c:<12} R² min / median / max {summary(per_case[c], 5)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="Treloar base seeds")
    parser.add_argument(
        "--seeds", type=int, default=3, help="base seeds per synthetic material"
    )
    parser.add_argument("--quick", action="store_true", help="one base seed everywhere")
    parser.add_argument(
        "--section",
        choices=("all", "treloar", "synthetic", "ogden-rubber"),
        default="all",
    )
    args = parser.parse_args()
    runs, seeds = (1, 1) if args.quick else (args.runs, args.seeds)
    if args.section in ("all", "treloar"):
        treloar(runs)
    with tempfile.TemporaryDirectory() as tmp:
        if args.section in ("all", "synthetic"):
            verdicts = synthetic(seeds, pathlib.Path(tmp))
            print("== summary (target: LS rel. error <= 1e-6, PANN R² >= 0.999) ==")
            for line in verdicts:
                print("  ", line)
        if args.section in ("all", "ogden-rubber"):
            ogden_rubber(seeds, pathlib.Path(tmp))


if __name__ == "__main__":
    main()
