"""The `klax-calibrate` job: a quick run, its output files, and input validation.

The job is run in-process through `klax.mechanics.calibrate.main` (a
subprocess only checks `python -m`). Quick runs use few steps; their fits are
not meant to be good.
"""

import csv
import json
import subprocess
import sys

import jax
import pytest

import klax.mechanics as km
from klax.mechanics._calibration import evaluate_cases
from klax.mechanics.calibrate import main

# A quick run: few Adam and Levenberg–Marquardt steps, no restarts.
QUICK = [
    "--steps",
    "40",
    "--refine-steps",
    "20",
    "--seeds",
    "2",
    "--width",
    "4",
    "--log-every",
    "10",
    "--quiet",
    "--max-restarts",
    "0",
]
HEADER = "load_case,stretch,nominal_stress_MPa\n"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_all_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*QUICK, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "fit.png",
        "history.csv",
        "metrics.csv",
        "model.eqx",
        "model.json",
    ]
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = read_csv(out / "metrics.csv")
    assert list(metrics[0]) == [
        "load_case",
        "split",
        "n_points",
        "r2",
        "rel_l2",
        "mae_MPa",
        "max_abs_MPa",
    ]
    assert [(r["load_case"], r["split"], r["n_points"]) for r in metrics] == [
        ("uniaxial", "train", "25"),
        ("equibiaxial", "train", "17"),
        ("pure_shear", "test", "14"),
    ]
    history = read_csv(out / "history.csv")
    assert list(history[0]) == ["step", "loss", "loss_seed_0", "loss_seed_1"]
    # The last row is the loss after the least-squares refinement.
    assert [int(r["step"]) for r in history] == [0, 10, 20, 30, 40, 60]
    assert float(history[-1]["loss"]) <= float(history[-2]["loss"])
    assert all(float(r["loss"]) > 0 for r in history)

    config = json.loads((out / "model.json").read_text())
    for key in (
        "model",
        "invariants",
        "width_sizes",
        "depth",
        "activation",
        "seeds",
        "selected_seed",
        "train_cases",
        "test_cases",
        "data_sha256",
        "klax_version",
        "input_scale",
    ):
        assert key in config
    assert config["train_cases"] == ["uniaxial", "equibiaxial"]
    assert config["test_cases"] == ["pure_shear"]
    assert config["dtype"] == "float64"

    printed = capsys.readouterr().out
    assert "load_case" in printed and "pure_shear    test" in printed

    # The saved model reproduces the reported metrics.
    with jax.enable_x64(True):
        model = km.load_model(out)
        curves = km.read_curves()
        cases = [row["load_case"] for row in metrics]
        predicted = evaluate_cases(model, cases, [curves[c].stretch for c in cases])
        for row, values in zip(metrics, predicted, strict=True):
            r2 = km.fit_metrics(curves[row["load_case"]].stress, values).r2
            assert r2 == pytest.approx(float(row["r2"]), abs=1e-12)


def test_baseline_uniaxial_only_and_required_r2(tmp_path, capsys):
    out = tmp_path / "baseline"
    args = [
        "--model",
        "neo-hooke",
        "--train",
        "uniaxial",
        "--steps",
        "20",
        "--seeds",
        "1",
        "--no-plot",
        "--quiet",
        "--require-r2",
        "uniaxial=-10,pure_shear=1.5",
        "--out",
        str(out),
    ]
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "training on uniaxial data only" in captured.err
    assert "R² requirement not met: pure_shear" in captured.err
    assert "uniaxial" not in captured.err.split("not met:")[1]
    assert sorted(p.name for p in out.iterdir()) == [
        "history.csv",
        "metrics.csv",
        "model.eqx",
        "model.json",
    ]
    splits = [(r["load_case"], r["split"]) for r in read_csv(out / "metrics.csv")]
    assert splits == [
        ("uniaxial", "train"),
        ("equibiaxial", "test"),
        ("pure_shear", "test"),
    ]


def _write(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


TREL = "uniaxial,1.0,0.0\nuniaxial,1.5,0.3\nuniaxial,2.0,0.5\n"
INVALID = {
    "missing column": ("load_case,stretch\nuniaxial,1.0\n", [], "missing column"),
    "unknown case": (HEADER + TREL + "shear,1.2,0.1\n", [], "row 5: unknown load case"),
    "non-positive stretch": (
        HEADER + TREL + "uniaxial,-1.0,0.1\n",
        [],
        "row 5: stretch must be positive",
    ),
    "not a number": (
        HEADER + "uniaxial,x,0.1\n",
        [],
        "row 2: stretch must be a number",
    ),
    "train case absent": (
        HEADER + TREL,
        ["--train", "uniaxial,equibiaxial"],
        "--train: load case 'equibiaxial' is not in the data file",
    ),
    "test case absent": (
        HEADER + TREL,
        ["--train", "uniaxial", "--test", "pure_shear"],
        "--test: load case 'pure_shear' is not in the data file",
    ),
    "overlap": (
        HEADER + TREL,
        ["--train", "uniaxial", "--test", "uniaxial"],
        "--train and --test overlap: uniaxial",
    ),
    "too few points": (
        HEADER + TREL + "pure_shear,1.0,0.0\npure_shear,2.0,0.5\n",
        ["--train", "uniaxial,pure_shear"],
        "'pure_shear' has 2 point\\(s\\); at least 3",
    ),
    "unknown train name": (
        HEADER + TREL,
        ["--train", "uniaxal"],
        "--train: unknown load case 'uniaxal'",
    ),
    "bad steps": (HEADER + TREL, ["--steps", "-1"], "--steps must be at least 0"),
    "bad lr": (HEADER + TREL, ["--lr", "-1"], "--lr must be a positive number"),
    "not an int": (HEADER + TREL, ["--seeds", "two"], "argument --seeds: invalid int"),
    "bad model": (
        HEADER + TREL,
        ["--model", "yeoh"],
        "argument --model: invalid choice",
    ),
    "bad requirement": (
        HEADER + TREL,
        ["--train", "uniaxial", "--require-r2", "uniaxial:0.9"],
        "--require-r2: expected CASE=",
    ),
    "requirement case": (
        HEADER + TREL,
        ["--train", "uniaxial", "--require-r2", "pure_shear=0.9"],
        "--require-r2: load case",
    ),
}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_input_exits_2_and_writes_nothing(tmp_path, capsys, name):
    text, extra, match = INVALID[name]
    out = tmp_path / "out"
    code = main(["--data", _write(tmp_path, text), *extra, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("klax-calibrate: error: ") and err.count("\n") == 1
    assert __import__("re").search(match, err), err
    assert not out.exists()


def test_invalid_paths(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "missing.csv"), "--out", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--out", str(blocker)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert not out.exists() and blocker.read_text() == "x"


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "klax.mechanics.calibrate",
            "--batch-size",
            "0",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "klax-calibrate: error: --batch-size must be at least 1, got 0"
    )
    assert not (tmp_path / "o").exists()
