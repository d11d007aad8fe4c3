"""`klax-calibrate`: fit a hyperelastic potential to load-curve data.

By default: an incompressible isotropic PANN on the polyconvex invariants
(Ĩ1, Ĩ2) is calibrated on Treloar's uniaxial and equibiaxial data (shipped
with klax) and predicts pure shear. Run `klax-calibrate --help` (or
`python -m klax.mechanics.calibrate --help`) for the options.

Outputs in `--out`: `model.eqx` + `model.json` (reload with
`klax.mechanics.load_model`), `metrics.csv`, `history.csv`, `fit.png`.
`--model cann` (automated model discovery: a sparse CANN trained along a
regularisation path of `--strengths` penalties in one ensemble fit, the
sparsest law within `--tolerance` of the best R² selected) also writes
`path.csv`, `law.txt` and `law.json`.
Exit codes: 0 success, 2 invalid input (nothing is written), 3 an R²
requirement of `--require-r2` was missed.
"""

import argparse
import csv
import importlib.metadata
import math
import pathlib
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from ._data import DataError, LoadCurve, data_hash, parse_curves, read_data_bytes
from ._loadcases import LOAD_CASES

PROG = "klax-calibrate"
MODEL_CHOICES = ("pann", "neo-hooke", "mooney-rivlin", "ogden3", "cann")
LOSS_CHOICES = ("mse", "mse-per-case", "relative")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        raise DataError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Calibrate a hyperelastic potential (default: a physics-augmented "
            "neural network) to nominal-stress data of homogeneous load cases, "
            "evaluate it on held-out cases and write the model, metrics, "
            "history and a plot."
        ),
    )
    add = parser.add_argument
    add(
        "--data",
        metavar="PATH",
        help="CSV with columns load_case,stretch,"
        "nominal_stress_MPa (default: the packaged treloar.csv)",
    )
    add(
        "--train",
        metavar="CASES",
        default="uniaxial,equibiaxial",
        help="comma-separated load cases to fit (default: %(default)s)",
    )
    add(
        "--test",
        metavar="CASES",
        default=None,
        help="comma-separated held-out cases (default: all other cases in the file)",
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
        choices=("polyconvex", "isochoric"),
        default="polyconvex",
        help="PANN inputs: (Ĩ1, Ĩ2) or (Ī1, Ī2) (default: polyconvex)",
    )
    add("--width", type=int, default=8, help="hidden width of the FICNN (default: 8)")
    add(
        "--depth",
        type=int,
        default=1,
        help="number of hidden layers of the FICNN (default: 1)",
    )
    add("--steps", type=int, default=20000, help="optimiser steps (default: 20000)")
    add("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    add("--batch-size", type=int, default=32, help="batch size (default: 32)")
    add(
        "--loss",
        choices=LOSS_CHOICES,
        default="mse",
        help="mse, mse-per-case (equal case weights) or relative (default: mse)",
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
        help="rounds of retraining collapsed PANN seeds (training R² < 0.95 or a "
        "dead output layer) from fresh seeds (default: 2)",
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
        help="output directory, created if missing (default: ./calibration)",
    )
    add("--no-plot", action="store_true", help="do not write fit.png")
    add(
        "--require-r2",
        metavar="CASE=VALUE,...",
        default=None,
        help="exit with code 3 if a case's R² is below its threshold",
    )
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def _case_list(text: str, flag: str) -> list[str]:
    names = [c.strip() for c in text.split(",")] if text.strip() else []
    for name in names:
        if not name:
            raise DataError(f"{flag}: empty load case name in {text!r}")
        if name not in LOAD_CASES:
            raise DataError(
                f"{flag}: unknown load case {name!r}; expected one of "
                f"{', '.join(LOAD_CASES)}"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{flag}: load case {duplicates[0]!r} is listed twice")
    return names


def _requirements(text: str | None, cases: Sequence[str]) -> dict[str, float]:
    if text is None:
        return {}
    result = {}
    for item in text.split(","):
        case, sep, value = item.partition("=")
        case = case.strip()
        if not sep:
            raise DataError(
                f"--require-r2: expected CASE=VALUE entries, got {item.strip()!r}"
            )
        if case not in cases:
            raise DataError(
                f"--require-r2: load case {case!r} is not evaluated; choose from "
                f"{', '.join(cases)}"
            )
        try:
            threshold = float(value)
        except ValueError:
            raise DataError(
                f"--require-r2: threshold for {case} must be a number, got {value!r}"
            ) from None
        if not math.isfinite(threshold):
            raise DataError(f"--require-r2: threshold for {case} must be finite")
        result[case] = threshold
    return result


def _check_int(value: int, flag: str, minimum: int) -> None:
    if value < minimum:
        raise DataError(f"{flag} must be at least {minimum}, got {value}")


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """All checks of the arguments and the data; raises DataError, writes nothing."""
    _check_int(args.width, "--width", 1)
    _check_int(args.depth, "--depth", 0)
    _check_int(args.steps, "--steps", 1)
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
    if out.exists() and not out.is_dir():
        raise DataError(f"--out: {out} exists and is not a directory")

    raw = read_data_bytes(args.data)
    curves = parse_curves(raw)
    train = _case_list(args.train, "--train")
    if not train:
        raise DataError("--train: at least one load case is needed")
    if args.test is None:
        test = [c for c in curves if c not in train]
    else:
        test = _case_list(args.test, "--test")
    for flag, cases in (("--train", train), ("--test", test)):
        for case in cases:
            if case not in curves:
                raise DataError(
                    f"{flag}: load case {case!r} is not in the data file (it has "
                    f"{', '.join(curves)})"
                )
    overlap = [c for c in train if c in test]
    if overlap:
        raise DataError(f"--train and --test overlap: {', '.join(overlap)}")
    for case in train:
        n = len(curves[case].stretch)
        if n < 3:
            raise DataError(
                f"--train: load case {case!r} has {n} point(s); at least 3 are needed"
            )
    requirements = _requirements(args.require_r2, train + test)
    return dict(
        raw=raw,
        curves=curves,
        train=train,
        test=test,
        out=out,
        requirements=requirements,
    )


def _write_metrics(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    columns = [
        "load_case",
        "split",
        "n_points",
        "r2",
        "rel_l2",
        "mae_MPa",
        "max_abs_MPa",
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})


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


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'load_case':<13} {'split':<6} {'n':>3}  {'r2':>7}  {'rel_l2':>7}  "
        f"{'mae_MPa':>8}  {'max_abs_MPa':>11}"
    ]
    for r in rows:
        lines.append(
            f"{r['load_case']:<13} {r['split']:<6} {r['n_points']:>3}  "
            f"{r['r2']:>7.4f}  {r['rel_l2']:>7.4f}  {r['mae_MPa']:>8.4f}  "
            f"{r['max_abs_MPa']:>11.4f}"
        )
    return "\n".join(lines)


def _plot(path, model, curves, rows, history) -> bool:
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
    import numpy as np

    from ._calibration import model_case_stress

    n = len(rows) + 1
    fig = Figure(figsize=(4.0 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, row in zip(axes[:-1], rows, strict=True):
        curve: LoadCurve = curves[row["load_case"]]
        top = 1.05 * float(np.max(curve.stretch))
        grid = np.linspace(min(1.0, float(np.min(curve.stretch))), top, 200)
        ax.plot(curve.stretch, curve.stress, "o", ms=4, label="data")
        ax.plot(
            grid, model_case_stress(model, row["load_case"], grid), "-", label="model"
        )
        ax.set_title(f"{row['load_case']} ({row['split']}), R² = {row['r2']:.4f}")
        ax.set_xlabel("λ1")
        ax.set_ylabel("P11 / MPa")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax = axes[-1]
    steps, values = history["loss"]
    ax.semilogy(steps, [float(v) for v in values])
    ax.set_title("training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss / MPa²")
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
    return True


def _initial_shear_modulus(model: Any) -> Any:
    return model.initial_shear_modulus()


def _discover(args: argparse.Namespace, curves, train, test):
    """`--model cann`: the regularisation path; returns the selected law as a seed."""
    import jax.random as jr

    from ._calibration import SeedResult
    from ._discovery import discover_law, format_path_table as discovery_table

    discovery = discover_law(
        curves,
        train,
        test,
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
        {c: row["r2"][c] for c in train},
    )
    print(discovery_table(discovery.rows))
    return best, [best], discovery


def _run(args: argparse.Namespace, checked: dict[str, Any]) -> int:
    import equinox as eqx
    import jax

    from ._calibration import (
        calibrate_seeds,
        evaluate_cases,
        invariant_scales,
        save_model,
    )
    from ._cann import cann_config
    from ._data import fit_metrics
    from ._discovery import write_discovery

    start = time.perf_counter()
    curves, train, test = checked["curves"], checked["train"], checked["test"]
    if train == ["uniaxial"]:
        print(
            f"{PROG}: warning: training on uniaxial data only; the fit does not "
            "constrain multiaxial states, so predictions of other load cases can "
            "be far off (Dammaß et al. 2025).",
            file=sys.stderr,
        )
    config: dict[str, Any] = {"model": args.model}
    if args.model == "pann":
        config.update(
            invariants=args.invariants,
            width_sizes=[args.width] * args.depth,
            width=args.width,
            depth=args.depth,
            activation="softplus",
            input_scale=list(invariant_scales(curves, train, args.invariants)),
            floor=0.0,
            positivity=args.positivity,
        )
    elif args.model == "ogden3":
        config.update(num_terms=3)
    with jax.enable_x64(True):
        if args.model == "cann":
            best, results, discovery = _discover(args, curves, train, test)
            config.update(cann_config(best.model))
        else:
            discovery = None
            best, results = calibrate_seeds(
                config,
                curves,
                train_cases=train,
                seeds=args.seeds,
                base_seed=args.seed,
                steps=args.steps,
                learning_rate=args.lr,
                batch_size=args.batch_size,
                loss=args.loss,
                log_every=args.log_every,
                verbose=0 if args.quiet else 2,
                max_restarts=args.max_restarts,
                report=lambda message: print(f"{PROG}: {message}", file=sys.stderr),
            )
        import klax

        model = klax.finalize(best.model)
        rows = []
        splits = [("train", c) for c in train] + [("test", c) for c in test]
        predictions = evaluate_cases(
            model, [c for _, c in splits], [curves[c].stretch for _, c in splits]
        )
        for (split, case), predicted in zip(splits, predictions, strict=True):
            curve = curves[case]
            m = fit_metrics(curve.stress, predicted)
            rows.append(
                dict(
                    load_case=case,
                    split=split,
                    n_points=len(curve.stretch),
                    r2=m.r2,
                    rel_l2=m.rel_l2,
                    mae_MPa=m.mae,
                    max_abs_MPa=m.max_abs,
                )
            )
        mu0 = float(eqx.filter_jit(_initial_shear_modulus)(model))
        out: pathlib.Path = checked["out"]
        out.mkdir(parents=True, exist_ok=True)
        try:
            version = importlib.metadata.version("klax")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        config.update(
            seeds=[r.seed for r in results],
            selected_seed=best.seed,
            base_seed=args.seed,
            train_cases=train,
            test_cases=test,
            data_file=str(args.data) if args.data else "klax/data/treloar.csv",
            data_sha256=data_hash(checked["raw"]),
            loss=args.loss,
            steps=args.steps,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            training_loss=best.loss,
            initial_shear_modulus_MPa=mu0,
            klax_version=version,
        )
        save_model(out, best.model, config)
        extra = [] if discovery is None else write_discovery(out, discovery)
        _write_metrics(out / "metrics.csv", rows)
        _write_history(out / "history.csv", best, results)
        plotted = (
            False
            if args.no_plot
            else _plot(out / "fit.png", model, curves, rows, best.history)
        )
    elapsed = time.perf_counter() - start
    print(_table(rows))
    losses = ", ".join(f"{r.seed}: {r.loss:.3e}" for r in results)
    print(f"model {args.model}; kept seed {best.seed} of training losses {{{losses}}}")
    print(f"initial shear modulus mu0 = {mu0:.4f} MPa; training took {elapsed:.1f} s")
    if discovery is not None:
        selected = discovery.rows[discovery.selected]["strength"]
        print(f"discovered law (strength {selected:.3g}):")
        print(discovery.law.formula(4))
    written = ["model.eqx", "model.json", "metrics.csv", "history.csv", *extra]
    written += ["fit.png"] if plotted else []
    print(f"wrote {', '.join(written)} to {out}")
    failed = [
        f"{r['load_case']} {r['r2']:.4f} < {checked['requirements'][r['load_case']]}"
        for r in rows
        if r["load_case"] in checked["requirements"]
        and not r["r2"] >= checked["requirements"][r["load_case"]]
    ]
    if failed:
        print(f"{PROG}: R² requirement not met: {'; '.join(failed)}", file=sys.stderr)
        return 3
    return 0


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
