"""`klax-calibrate`: fit a hyperelastic potential to homogeneous-test data.

By default: an incompressible isotropic PANN on power sums of the isochoric
principal stretches (`--invariants power-sums`) is calibrated on Treloar's
uniaxial and equibiaxial data (shipped with klax) and predicts pure shear.
Data files may mix uniaxial (tension and compression), equibiaxial,
pure-shear, general biaxial and simple-shear tests, with stresses in MPa,
kPa or Pa. Run `klax-calibrate --help` (or `python -m
klax.mechanics.calibrate --help`) for the options.

Outputs in `--out`: `model.eqx` + `model.json` (reload with
`klax.mechanics.load_model`), `metrics.csv`, `history.csv`, `fit.png`.
`--model cann` (automated model discovery: a sparse CANN trained along a
regularisation path of `--strengths` penalties in one ensemble fit, the
sparsest law within `--tolerance` of the best R² selected) also writes
`path.csv`, `law.txt`, `law.json` and `pareto.png`.
Exit codes: 0 success, 2 invalid input (nothing is written), 3 an R²
requirement of `--require-r2` was missed.

The job runs in four steps, one function each: parse the arguments
(`_parser`), validate arguments and data without writing anything
(`_validate`), train and evaluate through the library (`_train`,
`_evaluate`), and write and print the results (`_write`, `_report`). A new
option adds its flag to `_parser`, its checks to `_validate` and its output to
`_write`.
"""

import argparse
import csv
import importlib.metadata
import importlib.util
import math
import os
import pathlib
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from ._data import (
    SCHEMA,
    UNITS,
    DataError,
    Measurements,
    concatenate_measurements,
    data_hash,
    parse_measurements,
    parse_selection,
    read_data_bytes,
    sanity_warnings,
    selection_mask,
)
from ._loadcases import ALL_LOAD_CASES

PROG = "klax-calibrate"
MODEL_CHOICES = ("pann", "neo-hooke", "mooney-rivlin", "ogden3", "cann")
LOSS_CHOICES = ("mse", "mse-per-case", "relative")
MODEL_FILES = ("model.json", "model.eqx")
METRICS_COLUMNS = (
    "load_case",
    "curve",
    "component",
    "split",
    "n_points",
    "r2",
    "rel_l2",
    "mae",
    "max_abs",
    "unit",
)
DEFAULT_TRAIN = "uniaxial,equibiaxial"

EPILOG = f"""\
load cases: {", ".join(ALL_LOAD_CASES)}

{SCHEMA}

--train/--test entries (comma separated): a load case selects all its curves;
biaxial@STRETCH_1 selects the biaxial curves at that held λ1 (e.g.
--train uniaxial,biaxial@1.5,biaxial@2.5 --test biaxial@2.0). Default
--train: {DEFAULT_TRAIN} where the data has both, else everything; default
--test: every curve not trained on.

exit codes: 0 success; 2 invalid arguments or data (one-line message naming
the argument or the file row and column, nothing written); 3 an R²
requirement of --require-r2 missed (the outputs are written)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        raise DataError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Calibrate a hyperelastic potential (default: a physics-augmented "
            "neural network) to nominal-stress data of homogeneous tests "
            "(uniaxial tension/compression, equibiaxial, pure shear, general "
            "biaxial, simple shear), evaluate it on held-out curves and write "
            "the model, metrics, history and a plot."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--data",
        metavar="PATH",
        action="append",
        help="CSV data file (columns below); repeat for several files "
        "(default: the packaged treloar.csv)",
    )
    add(
        "--train",
        metavar="CURVES",
        default=None,
        help="comma-separated load cases or biaxial@STRETCH_1 curves to fit "
        f"(default: {DEFAULT_TRAIN} if present, else all)",
    )
    add(
        "--test",
        metavar="CURVES",
        default=None,
        help="comma-separated held-out curves (default: all others in the data)",
    )
    add(
        "--model",
        choices=MODEL_CHOICES,
        default="pann",
        help="pann (incompressible isotropic PANN), cann (automated model "
        "discovery: a sparse constitutive ANN, one regularisation path) or a "
        "baseline (default: pann)",
    )
    add(
        "--strengths",
        type=int,
        default=16,
        help="cann: number of log-spaced penalty strengths (default: 16)",
    )
    add(
        "--penalty-p",
        type=float,
        default=1.0,
        help="cann: exponent p of the penalty λ Σ a^p, in (0, 1] (default: 1, L1)",
    )
    add(
        "--tolerance",
        type=float,
        default=0.002,
        help="cann: select the sparsest law whose R² on every case is within "
        "this of the best on the path (default: 0.002)",
    )
    add(
        "--invariants",
        choices=("power-sums", "incompressible", "polyconvex", "isochoric"),
        default="power-sums",
        help="PANN inputs: power-sums (the power sums Σλ̄^a of the isochoric "
        "principal stretches, a = ±1, ±2, ±4, ±6), polyconvex at J = 1; "
        "incompressible (√Ĩ1, Ĩ1, √Ī2, Ī2), polyconvex at J = 1; "
        "polyconvex (Ĩ1, Ĩ2), polyconvex at any J; isochoric (Ī1, Ī2) "
        "(default: power-sums)",
    )
    add("--width", type=int, default=8, help="hidden width of the FICNN (default: 8)")
    add(
        "--depth",
        type=int,
        default=1,
        help="number of hidden layers of the FICNN (default: 1)",
    )
    add(
        "--steps",
        type=int,
        default=0,
        help="Adam steps before the least-squares solve of a PANN (default: 0, "
        "Levenberg–Marquardt alone from each seed's initialisation)",
    )
    add(
        "--refine-steps",
        type=int,
        default=500,
        help="Levenberg–Marquardt steps (PANN: after Adam; baselines: the "
        "least-squares fit, at least 5000, stopping when converged); 0: none "
        "(default: 500)",
    )
    add("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    add("--batch-size", type=int, default=32, help="batch size (default: 32)")
    add(
        "--loss",
        choices=LOSS_CHOICES,
        default="mse",
        help="mse, mse-per-case (equal curve weights) or relative (default: mse)",
    )
    add(
        "--seeds",
        type=int,
        default=5,
        help="independent restarts; the lowest training loss is kept (default: 5)",
    )
    add("--seed", type=int, default=0, help="base PRNG seed (default: 0)")
    add(
        "--positivity",
        choices=("clamp", "softplus"),
        default="clamp",
        help="non-negative PANN weights by projection (clamp) or as softplus of "
        "a free parameter (default: clamp)",
    )
    add(
        "--max-restarts",
        type=int,
        default=2,
        help="rounds of retraining collapsed PANN seeds (every hidden-to-output "
        "weight zero) from fresh seeds (default: 2)",
    )
    add(
        "--log-every",
        type=int,
        default=100,
        help="log the training loss every this many steps (default: 100)",
    )
    add(
        "--out",
        metavar="DIR",
        default="./calibration",
        help="output directory, created if missing; a folder that already holds "
        "a model is refused unless --overwrite (default: ./calibration)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="replace the model files in an existing --out folder",
    )
    add("--no-plot", action="store_true", help="do not write fit.png")
    add(
        "--require-r2",
        metavar="CURVES=VALUE,...",
        default=None,
        help="exit with code 3 if a curve's R² is below its threshold (a load case "
        "or biaxial@STRETCH_1 entry applies to each of its curves)",
    )
    add("--quiet", action="store_true", help="no progress bar")
    add(
        "--export-abaqus",
        action="store_true",
        help="also write the Abaqus UHYPER subroutine uhyper.f next to the model",
    )
    add(
        "--fe-check",
        action="store_true",
        help="run a FElupe cube in uniaxial tension with the fitted model and report "
        'its deviation from the homogeneous prediction (needs pip install "klax[fe]")',
    )
    return parser


# ---------------------------------------------------------------------------
# Validation: every check of arguments and data, nothing written


def _requirements(text: str | None, selection: Sequence[str]) -> dict[str, float]:
    if text is None:
        return {}
    result = {}
    for item in text.split(","):
        entry, sep, value = item.partition("=")
        entry = entry.strip()
        if not sep:
            raise DataError(
                f"--require-r2: expected CASE=VALUE entries, got {item.strip()!r}"
            )
        if entry not in selection:
            raise DataError(
                f"--require-r2: load case {entry!r} is not evaluated; choose from "
                f"{', '.join(selection)}"
            )
        try:
            threshold = float(value)
        except ValueError:
            raise DataError(
                f"--require-r2: threshold for {entry} must be a number, got {value!r}"
            ) from None
        if not math.isfinite(threshold):
            raise DataError(f"--require-r2: threshold for {entry} must be finite")
        result[entry] = threshold
    return result


def _check_int(value: int, flag: str, minimum: int) -> None:
    if value < minimum:
        raise DataError(f"{flag} must be at least {minimum}, got {value}")


def _check_out(out: pathlib.Path, overwrite: bool) -> None:
    """`--out` must be creatable/writable and must not silently replace a model."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out: {out} exists and is not a directory")
    if out.is_dir():
        held = [name for name in MODEL_FILES if (out / name).exists()]
        if held and not overwrite:
            raise DataError(
                f"--out: {out} already holds a model ({', '.join(held)}); choose "
                "another folder or pass --overwrite"
            )
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"--out: cannot create {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"--out: cannot write to {parent} (permission denied)")


def _read_data(paths: Sequence[str] | None) -> tuple[Measurements, list[bytes]]:
    sources: list[str | None] = list(paths) if paths else [None]
    raws = [read_data_bytes(p) for p in sources]
    named = len(sources) > 1
    parts = [
        parse_measurements(raw, str(p) if named else "")
        for p, raw in zip(sources, raws, strict=True)
    ]
    return concatenate_measurements(parts), raws


def _entries_present(
    data: Measurements, selection: Sequence[str], flag: str
) -> list[np.ndarray]:
    masks = []
    present = sorted(
        {ALL_LOAD_CASES[i] for i in np.unique(data.case_index)},
        key=ALL_LOAD_CASES.index,
    )
    for entry in selection:
        mask = selection_mask(data, [entry])
        if not mask.any():
            raise DataError(
                f"{flag}: load case {entry!r} is not in the data file (it has "
                f"{', '.join(present)})"
            )
        masks.append(mask)
    return masks


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """All checks of the arguments and the data; raises DataError, writes nothing."""
    _check_int(args.width, "--width", 1)
    _check_int(args.depth, "--depth", 0)
    _check_int(args.steps, "--steps", 0)
    _check_int(args.refine_steps, "--refine-steps", 0)
    if args.steps == 0 and args.refine_steps == 0 and args.model == "pann":
        raise DataError("--steps and --refine-steps are both 0: nothing would train")
    _check_int(args.batch_size, "--batch-size", 1)
    _check_int(args.seeds, "--seeds", 1)
    _check_int(args.log_every, "--log-every", 1)
    _check_int(args.max_restarts, "--max-restarts", 0)
    _check_int(args.strengths, "--strengths", 1)
    if not 0.0 < args.penalty_p <= 1.0:
        raise DataError(f"--penalty-p must lie in (0, 1], got {args.penalty_p}")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise DataError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise DataError(f"--lr must be a positive number, got {args.lr}")
    if args.seed < 0:
        raise DataError(f"--seed must be non-negative, got {args.seed}")
    out = pathlib.Path(args.out)
    _check_out(out, args.overwrite)

    if args.export_abaqus and args.model == "ogden3":
        raise DataError("--export-abaqus: an ogden3 model cannot be exported")

    data, raws = _read_data(args.data)
    present = {ALL_LOAD_CASES[i] for i in np.unique(data.case_index)}
    if args.train is None:
        default = DEFAULT_TRAIN.split(",")
        if all(c in present for c in default):
            train = default
        else:
            train = [c for c in ALL_LOAD_CASES if c in present]
    else:
        train = parse_selection(args.train, "--train")
    if not train:
        raise DataError("--train: at least one load case is needed")
    train_masks = _entries_present(data, train, "--train")
    train_mask = np.any(train_masks, axis=0)
    if args.test is None:
        rest = data.take(~train_mask)
        test = [c.label for c in rest.curves()]
        test = list(dict.fromkeys(test))  # one entry per curve label
        # A biaxial file split by λ1 names its curves; a fully held-out load
        # case is named by itself.
        test = _compact(data, train_mask, test)
    else:
        test = parse_selection(args.test, "--test")
    test_masks = _entries_present(data, test, "--test") if test else []
    test_mask = np.any(test_masks, axis=0) if test_masks else np.zeros_like(train_mask)
    overlap = [
        entry
        for entry, mask in zip(test, test_masks, strict=True)
        if np.any(mask & train_mask)
    ]
    if overlap:
        raise DataError(f"--train and --test overlap: {', '.join(overlap)}")
    for entry, mask in zip(train, train_masks, strict=True):
        n = int(mask.sum())
        if n < 3:
            raise DataError(
                f"--train: load case {entry!r} has {n} point(s); at least 3 are needed"
            )
    requirements = _requirements(args.require_r2, train + test)
    if args.fe_check and importlib.util.find_spec("felupe") is None:
        raise DataError('--fe-check needs FElupe: pip install "klax[fe]"')
    return dict(
        raws=raws,
        data=data,
        train=train,
        test=test,
        train_mask=train_mask,
        test_mask=test_mask,
        out=out,
        requirements=requirements,
    )


def _compact(
    data: Measurements, train_mask: np.ndarray, labels: list[str]
) -> list[str]:
    """Name a held-out load case by itself when none of its curves is trained on."""
    result: list[str] = []
    for label in labels:
        case = label.partition("@")[0]
        whole = selection_mask(data, [case])
        name = case if not np.any(whole & train_mask) else label
        if name not in result:
            result.append(name)
    return result


# ---------------------------------------------------------------------------
# Training and evaluation (through the library)


def _config(args: argparse.Namespace, checked: dict[str, Any]) -> dict[str, Any]:
    from ._calibration import invariant_scales, stress_scale

    config: dict[str, Any] = {"model": args.model}
    if args.model == "pann":
        config.update(
            invariants=args.invariants,
            width_sizes=[args.width] * args.depth,
            width=args.width,
            depth=args.depth,
            activation="softplus",
            input_scale=list(
                invariant_scales(checked["data"], checked["train"], args.invariants)
            ),
            floor=0.0,
            positivity=args.positivity,
        )
        # The magnitude of the training stresses (MPa): a fresh network starts
        # at the data's order of magnitude whatever the unit (kPa tissue data).
        config["energy_scale"] = stress_scale(
            checked["data"].take(checked["train_mask"])
        )
    elif args.model == "ogden3":
        config.update(num_terms=3)
    return config


def _train(args: argparse.Namespace, checked: dict[str, Any], config: dict) -> Any:
    from ._calibration import calibrate_seeds

    return calibrate_seeds(
        config,
        checked["data"],
        train_cases=checked["train"],
        seeds=args.seeds,
        base_seed=args.seed,
        steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        loss=args.loss,
        log_every=args.log_every,
        verbose=0 if args.quiet else 2,
        max_restarts=args.max_restarts,
        refine_steps=args.refine_steps,
        report=lambda message: print(f"{PROG}: {message}", file=sys.stderr),
    )


def _evaluate(model: Any, checked: dict[str, Any]) -> list[dict[str, Any]]:
    """One metrics row per curve and stress component, in the data's unit."""
    from ._calibration import evaluate_measurements
    from ._data import fit_metrics

    data: Measurements = checked["data"]
    rows = []
    for split, mask in (
        ("train", checked["train_mask"]),
        ("test", checked["test_mask"]),
    ):
        part = data.take(mask)
        if part.size == 0:
            continue
        predicted = evaluate_measurements(model, part)
        for curve in part.curves():
            unit = str(part.unit[curve.index[0]])
            scale = UNITS[unit]
            m = fit_metrics(part.stress[curve.index], predicted[curve.index])
            rows.append(
                dict(
                    load_case=curve.load_case,
                    curve=curve.label,
                    component=curve.component,
                    split=split,
                    n_points=len(curve.index),
                    r2=m.r2,
                    rel_l2=m.rel_l2,
                    mae=m.mae / scale,
                    max_abs=m.max_abs / scale,
                    unit=unit,
                    stretch_1=curve.stretch_1,
                    sweep=part.sweep()[curve.index],
                    measured=part.stress[curve.index] / scale,
                )
            )
    return rows


def _main_unit(data: Measurements, mask: np.ndarray) -> str:
    units = data.unit[mask] if mask.any() else data.unit
    values, counts = np.unique(units, return_counts=True)
    return str(values[np.argmax(counts)])


def _in_unit(name: str, value: float, unit: str) -> str:
    if name.startswith("alpha"):
        return f"{name} = {value:.6g}"
    return f"{name} = {value / UNITS[unit]:.6g} {unit}"


# ---------------------------------------------------------------------------
# Output files and printing


def _write_metrics(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: repr(float(row[k])) if isinstance(row[k], float) else row[k]
                    for k in METRICS_COLUMNS
                }
            )


def _write_history(path: pathlib.Path, best, results) -> None:
    steps, values = best.history["loss"]
    per_seed = {r.seed: dict(zip(*r.history["loss"], strict=True)) for r in results}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", *(f"loss_seed_{s}" for s in per_seed)])
        for step, value in zip(steps, values, strict=True):
            row = [step, repr(float(value))]
            row += [
                repr(float(h[step])) if step in h else "" for h in per_seed.values()
            ]
            writer.writerow(row)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _table(rows: list[dict[str, Any]]) -> str:
    width = max([len("curve")] + [len(r["curve"]) for r in rows])
    lines = [
        f"{'curve':<{width}} {'comp':<4} {'split':<5} {'n':>4}  {'r2':>8}  "
        f"{'rel_l2':>8}  {'mae':>10}  {'max_abs':>10}  unit"
    ]
    for r in rows:
        lines.append(
            f"{r['curve']:<{width}} {r['component']:<4} {r['split']:<5} "
            f"{r['n_points']:>4}  {r['r2']:>8.4f}  {r['rel_l2']:>8.4f}  "
            f"{_number(r['mae']):>10}  {_number(r['max_abs']):>10}  {r['unit']}"
        )
    return "\n".join(lines)


_AXIS = {
    "uniaxial": "λ",
    "equibiaxial": "λ",
    "pure_shear": "λ",
    "biaxial": "λ2",
    "simple_shear": "γ",
}


def _import_matplotlib() -> None:
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:
        pass  # `_plot` imports again and reports (a missing matplotlib: a warning)


def _preload_matplotlib() -> threading.Thread:
    """Import matplotlib in a background thread while the model trains.

    The import is about a second of Python; XLA compiles without holding the
    GIL, so on two cores the import runs during the compilation instead of
    after it (`benchmarks/calibration_time.py`). `_plot` imports the modules
    again, which waits for this import to finish.
    """
    thread = threading.Thread(target=_import_matplotlib, daemon=True)
    thread.start()
    return thread


def _plot(path, model, rows, history) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn(
            "matplotlib is not installed, so fit.png is not written "
            "(`pip install matplotlib` or `pip install 'klax[plot]'`).",
            stacklevel=2,
        )
        return False
    from ._calibration import model_curve_stress

    cases = list(dict.fromkeys(r["load_case"] for r in rows))
    n = len(cases) + 1
    fig = Figure(figsize=(4.2 * n, 3.8), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    styles = {"P11": "-", "P22": "--", "P12": "-."}
    markers = {"P11": "o", "P22": "s", "P12": "^"}
    for ax, case in zip(axes[:-1], cases, strict=True):
        case_rows = [r for r in rows if r["load_case"] == case]
        held = list(dict.fromkeys(r["stretch_1"] for r in case_rows))
        colours = {h: f"C{i % 10}" for i, h in enumerate(held)}
        for r in case_rows:
            sweep = r["sweep"]
            lo, hi = float(np.min(sweep)), float(np.max(sweep))
            if case == "simple_shear":
                grid = np.linspace(min(0.0, lo), max(0.0, hi) * 1.05 or 0.05, 200)
            elif case == "biaxial":  # from the smallest measured λ2 (near uniaxial)
                grid = np.linspace(lo, hi * 1.05, 200)
            else:
                grid = np.linspace(min(1.0, lo), max(1.0, hi) * 1.05, 200)
            predicted = (
                model_curve_stress(model, case, r["component"], grid, r["stretch_1"])
                / UNITS[r["unit"]]
            )
            colour = colours[r["stretch_1"]]
            prefix = "" if r["stretch_1"] is None else f"λ1={r['stretch_1']:g} "
            label = f"{prefix}{r['component']} ({r['split']}, R² {r['r2']:.4f})"
            ax.plot(sweep, r["measured"], markers[r["component"]], ms=4, color=colour)
            ax.plot(grid, predicted, styles[r["component"]], color=colour, label=label)
        splits = "/".join(dict.fromkeys(r["split"] for r in case_rows))
        ax.set_title(f"{case} ({splits})")
        ax.set_xlabel(_AXIS[case])
        units = "/".join(dict.fromkeys(r["unit"] for r in case_rows))
        components = ", ".join(dict.fromkeys(r["component"] for r in case_rows))
        ax.set_ylabel(f"{components} / {units}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    ax = axes[-1]
    steps, values = history["loss"]
    ax.semilogy(steps, [float(v) for v in values])
    ax.set_title("training loss (kept seed)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (dimensionless)")
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
    return True


def _largest_stretch(data: Measurements) -> float:
    """The largest stretch of the data's stretch-driven tests (3 if none exceeds 1)."""
    shear = ALL_LOAD_CASES.index("simple_shear")
    biaxial = ALL_LOAD_CASES.index("biaxial")
    stretch = [
        data.stretch[data.case_index != shear],
        data.stretch_2[data.case_index == biaxial],
    ]
    top = max((float(np.max(s)) for s in stretch if s.size), default=3.0)
    return top if top > 1.0 else 3.0


def _provenance(args: argparse.Namespace, checked: dict[str, Any]) -> dict[str, Any]:
    hashes = [data_hash(raw) for raw in checked["raws"]]
    files = [str(p) for p in args.data] if args.data else ["klax/data/treloar.csv"]
    try:
        version = importlib.metadata.version("klax")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return dict(
        data_file=files[0] if len(files) == 1 else files,
        data_sha256=hashes[0] if len(hashes) == 1 else hashes,
        klax_version=version,
    )


def _discover(args: argparse.Namespace, checked: dict[str, Any]):
    """`--model cann`: the regularisation path; returns the selected law as a seed."""
    import jax.random as jr

    from ._calibration import SeedResult
    from ._discovery import discover_law, format_path_table as discovery_table

    train = checked["train"]
    discovery = discover_law(
        checked["data"],
        train,
        checked["test"],
        strengths=args.strengths,
        p=args.penalty_p,
        steps=args.steps,
        learning_rate=args.lr,
        tolerance=args.tolerance,
        log_every=args.log_every,
        verbose=0 if args.quiet else 2,
        key=jr.key(args.seed),
    )
    i = discovery.selected
    row = discovery.rows[i]
    best = SeedResult(
        args.seed,
        discovery.models[i],
        discovery.history,
        float(discovery.path.loss[i]),
        {c: r for c, r in row["r2"].items() if row["split"][c] == "train"},
    )
    print(discovery_table(discovery.rows))
    return best, [best], discovery


def _run(args: argparse.Namespace, checked: dict[str, Any]) -> int:
    import jax

    import klax

    from ._baselines import baseline_constants
    from ._calibration import _initial_shear_modulus, stress_scale
    from ._cann import cann_config
    from ._discovery import write_discovery

    start = time.perf_counter()
    preload = None if args.no_plot else _preload_matplotlib()
    data: Measurements = checked["data"]
    for message in sanity_warnings(data):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    train = checked["train"]
    if all(entry.partition("@")[0] == "uniaxial" for entry in train):
        print(
            f"{PROG}: warning: training on uniaxial data only; the fit does not "
            "constrain multiaxial states, so predictions of other load cases can "
            "be far off (Dammaß et al. 2025).",
            file=sys.stderr,
        )
    unit = _main_unit(data, checked["train_mask"])
    scale = stress_scale(data.take(checked["train_mask"]))
    if not args.quiet and args.steps > 0:
        rms = f"{_number(scale / UNITS[unit])} {unit}"
        print(
            f"{PROG}: training {args.seeds} seed(s) for {args.steps} Adam steps; the "
            "bar shows the training loss on all training points, divided by the "
            f"squared RMS training stress ({rms}): median (min, max) over the seeds",
            file=sys.stderr,
        )
    config = _config(args, checked)
    with jax.enable_x64(True):
        if args.model == "cann":
            best, results, discovery = _discover(args, checked)
            config.update(cann_config(best.model))
        else:
            discovery = None
            best, results = _train(args, checked, config)
        trained = time.perf_counter() - start  # not counting the FE check and files
        model = klax.finalize(best.model)
        rows = _evaluate(model, checked)
        mu0 = float(_initial_shear_modulus(model))
        constants = (
            baseline_constants(model) if args.model not in ("pann", "cann") else {}
        )
        if args.model == "pann":
            config["polyconvex"] = (
                "for every J > 0"
                if args.invariants == "polyconvex"
                else "at J = 1 (incompressible states) only"
            )
        config.update(
            seeds=[r.seed for r in results],
            selected_seed=best.seed,
            base_seed=args.seed,
            train_cases=train,
            test_cases=checked["test"],
            loss=args.loss,
            steps=args.steps,
            refine_steps=args.refine_steps,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            training_loss=best.loss,
            initial_shear_modulus_MPa=mu0,
            stress_unit=unit,
            **({"constants": constants} if constants else {}),
            **_provenance(args, checked),
        )
        fe = None
        if args.fe_check:  # FE cube vs homogeneous uniaxial (klax.mechanics.fe_check)
            from ._felupe import fe_check

            fe = fe_check(model, _largest_stretch(data))
            config.update(fe_check=fe.summary())
        out: pathlib.Path = checked["out"]
        if preload is not None:
            preload.join()
        written = _write(out, args, best, results, rows, model, config)
        if discovery is not None:
            written += write_discovery(out, discovery, plot=not args.no_plot)
    if discovery is not None:
        selected = discovery.rows[discovery.selected]["strength"]
        print(f"discovered law (strength {selected:.3g}):")
        print(discovery.law.formula(4))
    _report(args, rows, results, best, mu0, unit, constants, trained, written, out)
    if fe is not None:
        print(fe)
    failed = []
    for entry, threshold in checked["requirements"].items():
        for r in rows:
            picked = r["curve"] == entry or r["load_case"] == entry
            if picked and not r["r2"] >= threshold:
                failed.append(
                    f"{r['curve']} {r['component']} {r['r2']:.4f} < {threshold}"
                )
    if failed:
        print(f"{PROG}: R² requirement not met: {'; '.join(failed)}", file=sys.stderr)
        return 3
    return 0


def _write(out, args, best, results, rows, model, config) -> list[str]:
    """Write every output file; returns their names."""
    from ._calibration import save_model

    out.mkdir(parents=True, exist_ok=True)
    save_model(out, best.model, config)
    exported = []
    if args.export_abaqus:
        from ._abaqus import export_abaqus

        source = f"{out / 'model.json'} (klax-calibrate)"
        exported = [p.name for p in export_abaqus(model, out, description=source)]
    _write_metrics(out / "metrics.csv", rows)
    _write_history(out / "history.csv", best, results)
    written = ["model.eqx", "model.json", "metrics.csv", "history.csv"]
    if not args.no_plot and _plot(out / "fit.png", model, rows, best.history):
        written.append("fit.png")
    return written + exported


def _report(args, rows, results, best, mu0, unit, constants, trained, written, out):
    print(_table(rows))
    losses = ", ".join(f"{r.seed}: {r.loss:.3e}" for r in results)
    print(f"model {args.model}; kept seed {best.seed} of training losses {{{losses}}}")
    if constants:
        fitted = ", ".join(_in_unit(k, v, unit) for k, v in constants.items())
        print(f"fitted constants: {fitted}")
    print(
        f"initial shear modulus mu0 = {_number(mu0 / UNITS[unit])} {unit}; "
        f"training took {trained:.1f} s"
    )
    print(f"wrote {', '.join(written)} to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the calibration job; returns the exit code (0, 2 or 3)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        checked = _validate(args)
    except DataError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    return _run(args, checked)


if __name__ == "__main__":
    sys.exit(main())
