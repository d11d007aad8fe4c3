"""Wall time of the default `klax-calibrate` run, against an older checkout.

Runs `/usr/bin/time -f "%e %U %S" python -m klax.mechanics.calibrate --quiet
--out DIR` (the default Treloar job as a user meets it, `fit.png` included; a
fresh process each time, so every run includes start-up and compilation)
alternately for this checkout and for the klax source tree given by
`--baseline-src` (e.g. `git archive main | tar -x -C /tmp/main`), `--runs`
times each, and prints min / median / max of the wall and CPU (user + system)
seconds of both and of their ratio. Runs are interleaved so that load from
other processes on a shared machine affects both sides alike. `--no-plot`
times the job without the figure.

Target (issue 11): the default run <= 8 s wall on a 2-core machine.

Run: `python benchmarks/calibration_time.py --baseline-src /tmp/main [--runs 3]`.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent.parent


def timed_run(
    source: pathlib.Path, out: pathlib.Path, plot: bool = True
) -> tuple[float, float]:
    """`(wall, user + system CPU)` seconds of one default run from `source`."""
    env = dict(os.environ, PYTHONPATH=str(source))
    command = ["/usr/bin/time", "-f", "%e %U %S", sys.executable, "-m"]
    command += ["klax.mechanics.calibrate", "--quiet", "--out", str(out)]
    command += [] if plot else ["--no-plot"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=source)
    if done.returncode != 0:
        raise RuntimeError(f"run in {source} failed:\n{done.stderr}")
    wall, user, system = done.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(system)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--baseline-src", type=pathlib.Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-plot", action="store_true", help="time without fit.png")
    args = parser.parse_args()
    new, old = [], []
    baseline = args.baseline_src.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            plot = not args.no_plot
            new.append(timed_run(HERE, pathlib.Path(tmp) / f"new{i}", plot))
            old.append(timed_run(baseline, pathlib.Path(tmp) / f"old{i}", plot))
            print(
                f"run {i}: this checkout {new[-1][0]:.2f} s wall, {new[-1][1]:.2f} s "
                f"CPU; baseline {old[-1][0]:.2f} s wall, {old[-1][1]:.2f} s CPU"
            )
    for k, what in ((0, "wall"), (1, "CPU")):
        ratio = [a[k] / b[k] for a, b in zip(new, old, strict=True)]
        rows = (
            ("this checkout", [a[k] for a in new]),
            ("baseline", [b[k] for b in old]),
        )
        for name, values in (*rows, ("ratio", ratio)):
            print(
                f"{what:<5} {name:<14} min {min(values):.2f}  "
                f"median {statistics.median(values):.2f}  max {max(values):.2f}"
            )


if __name__ == "__main__":
    main()
