"""Time and size of `History.save` + `History.load` against the former pickle format.

Two histories as `klax.fit` makes them (metric values are NumPy 0-d arrays or,
for an ensemble, one array per logging step; the optimizer state is Adam's for
a FICNN):

- `typical`: 3 metrics x 1,000 logging steps, FICNN [16, 16];
- `large`: 3 metrics x 20,000 logging steps of an ensemble of 8, FICNN [64, 64]
  stacked 8 times.

Each repetition saves and loads with the safe format and with pickle (what
`History.save` did before) alternately, so that load on a shared machine
affects both alike; the script prints min / median / max of the times and of
the ratio safe / pickle, and the file sizes.

Run: `python benchmarks/history_io.py [--repeats 5]`.
"""

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax.random as jr
import numpy as np
import optax

import klax


def make_history(steps: int, members: int | None, width: int) -> klax.History:
    def build(key):
        return klax.nn.FICNN(2, "scalar", [width, width], key=key)

    if members is None:
        params = eqx.filter(build(jr.key(0)), eqx.is_inexact_array)
        opt_state = optax.adam(1e-3).init(params)
    else:
        ensemble = klax.make_ensemble(build, members, key=jr.key(0))
        params = eqx.filter(ensemble, eqx.is_inexact_array)
        opt_state = eqx.filter_vmap(optax.adam(1e-3).init)(params)
    history = klax.History(total_time=12.5, total_steps=steps * 100)
    rng = np.random.default_rng(0)
    for i in range(steps):
        for name in ("loss", "validation_loss", "lr"):
            if members is None:
                value = np.asarray(rng.random(), np.float32)
            else:
                value = rng.random(members).astype(np.float32)
            history.append(100 * i, name, value)
    history.final_opt_state = opt_state
    return history


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def summary(values: list[float]) -> str:
    return (
        f"min {min(values):.4g}  median {statistics.median(values):.4g}  "
        f"max {max(values):.4g}"
    )


def main(repeats: int) -> None:
    cases = {
        "typical": make_history(1_000, None, 16),
        "large": make_history(20_000, 8, 64),
    }
    with tempfile.TemporaryDirectory() as workdir:
        safe_path, pickle_path = Path(workdir) / "h.klax", Path(workdir) / "h.pkl"
        for name, history in cases.items():
            state = {
                k: getattr(history, k)
                for k in (
                    "content",
                    "total_time",
                    "total_steps",
                    "final_opt_state",
                    "stop_step",
                    "stop_reason",
                )
            }

            def save_pickle(state=state):
                with pickle_path.open("wb") as f:
                    pickle.dump(state, f)

            def load_pickle():
                klax.History.load(pickle_path, allow_pickle=True)

            def save_safe(history=history):
                history.save(safe_path)

            def load_safe():
                klax.History.load(safe_path)

            save_safe(), load_safe(), save_pickle(), load_pickle()  # warm up
            times: dict[str, list[float]] = {
                "save": [],
                "load": [],
                "save_pickle": [],
                "load_pickle": [],
            }
            for _ in range(repeats):
                times["save"].append(timed(save_safe))
                times["save_pickle"].append(timed(save_pickle))
                times["load"].append(timed(load_safe))
                times["load_pickle"].append(timed(load_pickle))
            print(
                f"{name}: file {safe_path.stat().st_size / 1e3:.1f} kB "
                f"(pickle {pickle_path.stat().st_size / 1e3:.1f} kB)"
            )
            for op in ("save", "load"):
                ratios = [
                    a / b for a, b in zip(times[op], times[op + "_pickle"], strict=True)
                ]
                print(f"  {op:4s} safe   [s]: {summary(times[op])}")
                print(f"  {op:4s} pickle [s]: {summary(times[op + '_pickle'])}")
                print(f"  {op:4s} ratio safe/pickle: {summary(ratios)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
