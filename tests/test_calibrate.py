"""The `klax-calibrate` job: a quick run, its output files, and input validation.

The job is run in-process through `klax.mechanics.calibrate.main` (a
subprocess only checks `python -m`). Quick runs use few steps; their fits are
not meant to be good.
"""

import csv
import json
import re
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
        "curve",
        "component",
        "split",
        "n_points",
        "r2",
        "rel_l2",
        "mae",
        "max_abs",
        "unit",
    ]
    assert {(r["component"], r["unit"]) for r in metrics} == {("P11", "MPa")}
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
    assert "curve" in printed and re.search(r"pure_shear\s+P11\s+test\s+14", printed)

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
    # The fitted constant is printed and saved.
    mu = json.loads((out / "model.json").read_text())["constants"]["mu"]
    assert mu > 0 and f"fitted constants: mu = {mu:.6g} MPa" in captured.out
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
    assert re.search(match, err), err
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


# ------------------------------------------------------------- mixed data files

MIXED = (
    "load_case,stretch,stretch_1,stretch_2,shear,nominal_stress_kPa,"
    "nominal_stress_1_kPa,nominal_stress_2_kPa,shear_stress_kPa\n"
    "uniaxial,0.9,,,,-31.2,,,\n"
    "uniaxial,1.0,,,,0.0,,,\n"
    "uniaxial,1.2,,,,48.1,,,\n"
    "uniaxial,1.5,,,,-95.0,,,\n"  # row 5: sign opposite to the stretch
    "biaxial,,1.2,0.95,,,52.0,12.1,\n"
    "biaxial,,1.2,1.1,,,66.3,41.7,\n"
    "biaxial,,1.2,1.2,,,80.2,80.2,\n"
    "biaxial,,1.5,0.9,,,120.5,,\n"  # P22 not measured
    "biaxial,,1.5,1.2,,,150.4,91.1,\n"
    "biaxial,,1.5,1.5,,,190.0,190.0,\n"
    "simple_shear,,,,0.0,,,,4.0\n"  # row 12: non-zero at γ = 0
    "simple_shear,,,,0.1,,,-0.1,14.0\n"
    "simple_shear,,,,0.2,,,-0.4,28.1\n"
)


def test_quick_run_on_a_mixed_file(tmp_path, capsys):
    out = tmp_path / "mixed"
    data = _write(tmp_path, MIXED)
    args = [*QUICK, "--data", data, "--out", str(out)]
    args += ["--train", "uniaxial,biaxial@1.5,simple_shear", "--test", "biaxial@1.2"]
    assert main(args) == 0
    captured = capsys.readouterr()
    # Sanity warnings name the rows but do not stop the job.
    assert re.search(
        r"warning: row 5: nominal_stress_kPa = -95 .*opposite", captured.err
    )
    assert re.search(
        r"warning: row 12: shear_stress_kPa = 4 .*undeformed", captured.err
    )
    assert "the bar shows" not in captured.err  # --quiet
    assert sorted(p.name for p in out.iterdir()) == [
        "fit.png",
        "history.csv",
        "metrics.csv",
        "model.eqx",
        "model.json",
    ]
    rows = read_csv(out / "metrics.csv")
    assert [(r["curve"], r["component"], r["split"], r["n_points"]) for r in rows] == [
        ("uniaxial", "P11", "train", "4"),
        ("biaxial@1.5", "P11", "train", "3"),
        ("biaxial@1.5", "P22", "train", "2"),
        ("simple_shear", "P12", "train", "3"),  # first seen at row 12
        ("simple_shear", "P22", "train", "2"),
        ("biaxial@1.2", "P11", "test", "3"),
        ("biaxial@1.2", "P22", "test", "3"),
    ]
    assert {r["unit"] for r in rows} == {"kPa"}
    config = json.loads((out / "model.json").read_text())
    assert config["train_cases"] == ["uniaxial", "biaxial@1.5", "simple_shear"]
    assert config["test_cases"] == ["biaxial@1.2"] and config["stress_unit"] == "kPa"
    # The table and mu0 are printed in kPa, not as 0.0000 MPa.
    assert "0.0000 MPa" not in captured.out and " kPa" in captured.out
    assert re.search(r"mu0 = [0-9.e+-]+ kPa", captured.out)
    # The saved model reproduces the reported metrics (in kPa).
    with jax.enable_x64(True):
        model = km.load_model(out)
        measured = km.parse_measurements(MIXED.encode())
        from klax.mechanics._calibration import evaluate_measurements

        predicted = evaluate_measurements(model, measured)
        for curve in measured.curves():
            row = next(
                r
                for r in rows
                if r["curve"] == curve.label and r["component"] == curve.component
            )
            m = km.fit_metrics(measured.stress[curve.index], predicted[curve.index])
            assert float(row["mae"]) == pytest.approx(m.mae * 1e3, rel=1e-9)
    # The same folder again: refused (it holds a model), nothing touched.
    before = (out / "model.eqx").read_bytes()
    assert main([*args]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (out / "model.eqx").read_bytes() == before


MIXED_HEAD = MIXED.split("\n")[0] + "\n"
MALFORMED_CLI = {
    "unknown load case": MIXED + "torsion,1.2,,,,3,,,\n",
    "missing stress column": "load_case,shear,nominal_stress_MPa\nsimple_shear,0.1,3\n",
    "shear row without shear": MIXED + "simple_shear,,,,,,,,3\n",
    "mixed units": "load_case,stretch,nominal_stress_MPa,nominal_stress_Pa\n"
    "uniaxial,1,0,\n",
    "non-numeric": MIXED + "biaxial,,1.2,1.3,,,x,3,\n",
    "stretch zero": MIXED + "biaxial,,1.2,0,,,1,3,\n",
    "cell that does not apply": MIXED + "uniaxial,1.1,,,0.1,3,,,\n",
}


@pytest.mark.parametrize("name", MALFORMED_CLI)
def test_malformed_files_exit_2_and_write_nothing(tmp_path, capsys, name):
    out = tmp_path / "out"
    code = main(["--data", _write(tmp_path, MALFORMED_CLI[name]), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("klax-calibrate: error: ") and err.count("\n") == 1
    assert re.search(r"row \d+|column", err), err
    assert not out.exists()


def test_selection_errors_and_out_checks(tmp_path, capsys):
    data = _write(tmp_path, MIXED)
    out = tmp_path / "out"
    for extra, match in [
        (["--train", "biaxial@1.7"], "'biaxial@1.7' is not in the data file"),
        (["--train", "biaxial", "--test", "biaxial@1.5"], "overlap: biaxial@1.5"),
        (["--train", "uniaxial@2"], "only biaxial curves"),
        (["--train", "pure_shear"], "'pure_shear' is not in the data file"),
    ]:
        assert main(["--data", data, *extra, "--out", str(out)]) == 2
        assert re.search(match, capsys.readouterr().err)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--data", data, "--out", str(blocker / "sub")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    held = tmp_path / "held"
    held.mkdir()
    (held / "model.json").write_text("{}")
    assert main(["--data", data, "--out", str(held)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not out.exists() and (held / "model.json").read_text() == "{}"


def test_help_lists_cases_schema_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        *km.ALL_LOAD_CASES,
        "stretch_1, stretch_2",
        "shear_stress_<U>",
        "MPa, kPa or Pa",
        "biaxial@STRETCH_1",
        "exit codes: 0",
        "3 an R²",
        "--overwrite",
    ):
        assert needle in text, needle


def _in_unit(text, unit, factor):
    """`text` (stresses in kPa) with every stress converted to `unit`."""
    lines = text.splitlines()
    out = [lines[0].replace("_kPa", f"_{unit}")]
    for line in lines[1:]:
        cells = line.split(",")
        cells[5:] = [repr(float(c) * factor) if c else "" for c in cells[5:]]
        out.append(",".join(cells))
    return "\n".join(out) + "\n"


def test_same_data_in_pa_and_mpa_gives_the_same_fit(tmp_path, capsys):
    """Unit invariance end to end: the same data in kPa, MPa and Pa."""
    results = {}
    for unit, factor in (("kPa", 1.0), ("MPa", 1e-3), ("Pa", 1e3)):
        path = tmp_path / f"{unit}.csv"
        path.write_text(_in_unit(MIXED, unit, factor))
        out = tmp_path / unit
        args = [*QUICK, "--seeds", "1", "--no-plot", "--data", str(path)]
        assert main([*args, "--out", str(out)]) == 0
        results[unit] = (read_csv(out / "metrics.csv"), factor)
    reference, _ = results["kPa"]
    for unit in ("MPa", "Pa"):
        rows, factor = results[unit]
        assert {r["unit"] for r in rows} == {unit}
        for a, b in zip(reference, rows, strict=True):
            assert float(b["r2"]) == pytest.approx(float(a["r2"]), abs=1e-6)
            # Errors are reported in the data's unit.
            assert float(b["mae"]) == pytest.approx(factor * float(a["mae"]), rel=1e-6)
    capsys.readouterr()
