"""Calibrating incompressible potentials to load-curve data with `klax.fit`.

The pieces of the `klax-calibrate` job, usable on their own: a loss on
nominal-stress data of several load cases, the seed loop with collapse
detection and restart, and saving/loading a calibrated model.
"""

import functools
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from .._ensemble import ensemble_member, fit_ensemble, stack_ensemble
from .._logging import History, metric
from .._losses import Loss
from .._wrappers import finalize, unwrap
from ..nn import InputSplitLinear
from ._baselines import (
    AbstractIsotropicPotential,
    MooneyRivlin,
    NeoHooke,
    Ogden,
    linear_parameters,
)
from ._data import LoadCurve, fit_metrics
from ._leastsquares import refine_least_squares, solve_linear_parameters
from ._loadcases import LOAD_CASES, check_load_case
from ._networks import reparametrize_nonnegative
from ._potentials import INVARIANT_SETS, IncompressiblePANN, pann_inputs

MODEL_NAMES = ("pann", "neo-hooke", "mooney-rivlin", "ogden3")
LOSS_NAMES = ("mse", "mse-per-case", "relative")
FORMAT = "klax.mechanics.calibrated-model/1"


# ---------------------------------------------------------------------------
# Nominal stress of any incompressible potential at mixed load cases


def _case_stretches(case_index: Array, stretch: Array) -> tuple[Array, Array, Array]:
    """Principal stretches for a load-case index (position in `LOAD_CASES`)."""
    root = 1.0 / jnp.sqrt(stretch)
    inverse = 1.0 / stretch
    l2 = jnp.where(case_index == 0, root, jnp.where(case_index == 1, stretch, 1.0))
    l3 = jnp.where(
        case_index == 0, root, jnp.where(case_index == 1, inverse * inverse, inverse)
    )
    return stretch, l2.astype(stretch.dtype), l3.astype(stretch.dtype)


def _p11_point(model: Callable, l1: Array, l2: Array, l3: Array) -> Array:
    if isinstance(model, AbstractIsotropicPotential):
        # Closed form: P11 = 2 (λ1 - λ3²/λ1)(W_1 + λ2² W_2).
        a2, b2, c2 = l1 * l1, l2 * l2, l3 * l3
        I1 = a2 + b2 + c2
        I2 = a2 * b2 + b2 * c2 + a2 * c2
        W1, W2 = jax.grad(model.isotropic_energy, (0, 1))(I1, I2)
        return 2.0 * (l1 - c2 / l1) * (W1 + b2 * W2)
    F = jnp.diag(jnp.stack([l1, l2, l3]))
    G = jax.grad(model)(F)
    return G[0, 0] - l3 / l1 * G[2, 2]


def predict_nominal_stress_11(
    model: Callable, case_index: Array, stretch: Array
) -> Array:
    """`P11` of an incompressible potential at points of mixed load cases.

    Potentials with an invariant form
    ([`AbstractIsotropicPotential`][klax.mechanics.AbstractIsotropicPotential],
    e.g. the PANN) use the closed form; others (Ogden) the AD path.

    **Arguments:**

    - `model`: a finalised potential.
    - `case_index`: int array, the position of each point's load case in
      `LOAD_CASES` (`0` uniaxial, `1` equibiaxial, `2` pure shear).
    - `stretch`: array of controlled stretches, same shape.

    **Returns:** `P11`, the shape of `stretch`.
    """
    stretch = jnp.asarray(stretch)
    case_index = jnp.asarray(case_index)
    if case_index.shape != stretch.shape:
        raise ValueError(
            "`predict_nominal_stress_11`: case_index and stretch must have the same "
            f"shape; got {case_index.shape} and {stretch.shape}."
        )
    l1, l2, l3 = _case_stretches(case_index, stretch)
    flat = [s.reshape(-1) for s in (l1, l2, l3)]
    values = jax.vmap(lambda a, b, c: _p11_point(model, a, b, c))(*flat)
    return values.reshape(stretch.shape)


class StressData(NamedTuple):
    """Training points: stretch, load-case index, measured `P11`, loss weight."""

    stretch: np.ndarray
    case_index: np.ndarray
    stress: np.ndarray
    weight: np.ndarray


def stress_data(
    curves: Mapping[str, LoadCurve], cases: Sequence[str], loss: str = "mse"
) -> StressData:
    """Stack the points of `cases` into training arrays with per-point weights.

    **Arguments:**

    - `curves`: load curves by case name.
    - `cases`: the cases to use.
    - `loss`: `"mse"` (all points weigh 1), `"mse-per-case"` (every case weighs
      the same in total) or `"relative"` (squared error relative to the
      measured stress, floored at 5 % of the case's largest stress, so that
      points at zero stress stay finite).

    **Returns:** a [`StressData`][klax.mechanics.StressData] of float64/int32
    NumPy arrays.
    """
    if loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}; got {loss!r}.")
    parts = []
    total = sum(len(curves[c].stretch) for c in cases)
    for case in cases:
        curve = curves[check_load_case(case, "stress_data")]
        n = len(curve.stretch)
        if loss == "mse":
            weight = np.ones(n)
        elif loss == "mse-per-case":
            weight = np.full(n, total / (len(cases) * n))
        else:
            floor = 0.05 * max(float(np.max(np.abs(curve.stress))), 1e-12)
            weight = 1.0 / np.maximum(np.abs(curve.stress), floor) ** 2
        index = np.full(n, LOAD_CASES.index(case), dtype=np.int32)
        parts.append((curve.stretch, index, curve.stress, weight))
    return StressData(*(np.concatenate([p[k] for p in parts]) for k in range(4)))


class StressLoss(Loss):
    """Weighted mean squared error of the nominal stress `P11`.

    The batch is a [`StressData`][klax.mechanics.StressData] (or a tuple of its
    four arrays); the loss is `mean(weight * (P̂11 - P11)²)`.
    """

    def value(self, model: Any, batch: Any, run_state: Any) -> Array:
        del run_state
        stretch, case_index, stress, weight = batch
        predicted = predict_nominal_stress_11(model, case_index, stretch)
        return jnp.mean(weight * (predicted - stress) ** 2)


stress_loss = StressLoss()


# ---------------------------------------------------------------------------
# Models


def invariant_scales(
    curves: Mapping[str, LoadCurve], cases: Sequence[str], invariants: str
) -> tuple[float, ...]:
    """Ranges of the shifted PANN inputs over the training points.

    Used as `input_scale` of [`IncompressiblePANN`][klax.mechanics.IncompressiblePANN]:
    the inputs then lie in `[0, 1]` on the data. (Ĩ2 reaches several thousand
    in equibiaxial tension while Ĩ1 stays below a hundred; unscaled inputs
    make the first updates kill the hidden units, see `benchmarks/collapse.py`.)
    One scale per input of the set (`pann_inputs`).
    """
    largest = np.zeros(len(INVARIANT_SETS[invariants]))
    for case in cases:
        lam = np.asarray(curves[case].stretch, dtype=np.float64)
        l1, l2, l3 = {
            "uniaxial": (lam, lam**-0.5, lam**-0.5),
            "equibiaxial": (lam, lam, lam**-2.0),
            "pure_shear": (lam, np.ones_like(lam), 1.0 / lam),
        }[check_load_case(case, "invariant_scales")]
        I1 = l1**2 + l2**2 + l3**2
        I2 = (l1 * l2) ** 2 + (l2 * l3) ** 2 + (l1 * l3) ** 2
        x = np.asarray(pann_inputs(I1, I2, invariants))
        largest = np.maximum(largest, np.max(x, axis=0))
    return tuple(float(v) if v > 1e-8 else 1.0 for v in largest)


def build_model(config: Mapping[str, Any], *, key: PRNGKeyArray) -> eqx.Module:
    """Build the (unfinalised) model described by a calibration config.

    Keys read: `model` (one of `MODEL_NAMES`) and, for `"pann"`,
    `width_sizes`, `invariants`, `input_scale`, `floor`, `energy_scale`
    (default 1) and `positivity` (`"clamp"`: `klax.NonNegative` projection,
    `"softplus"`: positive reparametrisation). The classical baselines start
    from a point drawn from `key` (the starting Ogden exponents differ by
    key), so restarts of a least-squares fit differ in their starting point.
    """
    name = config["model"]
    if name == "pann":
        model = IncompressiblePANN(
            tuple(config["width_sizes"]),
            config.get("invariants", "polyconvex"),
            input_scale=tuple(config.get("input_scale", 1.0)),
            floor=config.get("floor", 0.0),
            energy_scale=config.get("energy_scale", 1.0),
            key=key,
        )
        if config.get("positivity", "clamp") == "softplus":
            model = reparametrize_nonnegative(model)
        return model
    # Baselines: a random starting point per key (moduli of the order of rubber
    # in MPa; least-squares fits solve the moduli exactly anyway, the starting
    # exponents of Ogden models matter).
    u = jr.uniform(key, (6,), dtype=jnp.result_type(float))
    if name == "neo-hooke":
        return NeoHooke(0.1 + 0.9 * u[0])
    if name == "mooney-rivlin":
        return MooneyRivlin(0.1 + 0.4 * u[0], 0.1 * u[1])
    if name == "ogden3":
        alpha = jnp.stack([0.5 + 2.5 * u[0], 3.0 + 7.0 * u[1], -0.5 - 4.5 * u[2]])
        mu = jnp.stack([0.1 + 0.9 * u[3], 1e-3 * u[4], -1e-2 * u[5]])
        return Ogden(mu, alpha)
    raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {name!r}.")


def output_weights_dead(model: eqx.Module) -> bool:
    """Whether every hidden-to-output weight of a PANN's FICNN is (near) zero.

    The collapse of Dammaß-style calibrations: the projection onto `w >= 0`
    sets all of them to exactly zero and the hidden units never recover; with
    a softplus reparametrisation they become tiny instead. Models without a
    hidden layer (or baselines) return `False`.
    """
    if not isinstance(model, IncompressiblePANN) or not model.network.width_sizes:
        return False
    linear = model.network.layers[-1].linear_y
    weight = (
        linear.weights[0] if isinstance(linear, InputSplitLinear) else linear.weight
    )
    return bool(np.all(np.abs(np.asarray(unwrap(weight))) <= 1e-8))


# ---------------------------------------------------------------------------
# The seed loop


@functools.lru_cache(maxsize=8)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    # One optimizer object per learning rate: the compiled training loop is
    # keyed on it, so restarts and repeated calibrations reuse the compilation.
    return optax.adam(learning_rate)


class SeedResult(NamedTuple):
    """One trained seed: its index, the trained (unfinalised) model, its history,
    the final full-data training loss, the training R² per case and whether
    it collapsed (a PANN whose hidden-to-output weights all died)."""

    seed: int
    model: Any
    history: History | None
    loss: float
    train_r2: dict[str, float]
    collapsed: bool = False


_predict_jit = eqx.filter_jit(predict_nominal_stress_11)


def evaluate_cases(
    model: Callable, cases: Sequence[str], stretches: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """`P11` of a finalised potential along several load cases, in one compiled call.

    The points are padded to a power of two (at least 256), so repeated
    evaluations of different sizes reuse one compilation.
    """
    sizes = [len(s) for s in stretches]
    total = sum(sizes)
    padded = max(256, 1 << max(total - 1, 0).bit_length())
    stretch = np.ones(padded)
    index = np.zeros(padded, dtype=np.int32)
    start = 0
    for case, values, size in zip(cases, stretches, sizes, strict=True):
        stretch[start : start + size] = values
        index[start : start + size] = LOAD_CASES.index(
            check_load_case(case, "evaluate_cases")
        )
        start += size
    dtype = jnp.result_type(float)
    out = np.asarray(
        _predict_jit(model, jnp.asarray(index), jnp.asarray(stretch, dtype))
    )
    return list(np.split(out[:total], np.cumsum(sizes)[:-1]))


def _train_r2(model, curves, cases) -> dict[str, float]:
    predicted = evaluate_cases(
        finalize(model), cases, [curves[c].stretch for c in cases]
    )
    return {
        case: fit_metrics(curves[case].stress, p).r2
        for case, p in zip(cases, predicted, strict=True)
    }


def _stress_residuals(model: Any, data: Any) -> Array:
    # The residual vector of the loss: stress_loss == mean(residuals**2).
    stretch, case_index, stress, weight = data
    predicted = predict_nominal_stress_11(model, case_index, stretch)
    return jnp.sqrt(weight) * (predicted - stress)


@eqx.filter_jit
def _refine_members(ensemble: Any, data: Any, max_steps: int) -> Any:
    """Levenberg–Marquardt on every member of an ensemble (one compiled solve)."""
    return eqx.filter_vmap(
        lambda model: refine_least_squares(
            model, _stress_residuals, data, max_steps=max_steps
        )
    )(ensemble)


@eqx.filter_jit
def _fit_baseline_members(ensemble: Any, data: Any, max_steps: int) -> Any:
    """Least-squares fits of a baseline from every member's starting point."""

    def fit(model):
        model = solve_linear_parameters(
            model, _stress_residuals, data, linear_parameters
        )
        return refine_least_squares(model, _stress_residuals, data, max_steps=max_steps)

    return eqx.filter_vmap(fit)(ensemble)


def train_seeds(
    make_model: Callable[[PRNGKeyArray], eqx.Module],
    data: StressData,
    seeds: Sequence[int],
    *,
    base_key: PRNGKeyArray,
    steps: int,
    learning_rate: float,
    batch_size: int,
    log_every: int = 100,
    verbose: int = 2,
    refine_steps: int = 0,
) -> list[tuple[Any, History | None, float]]:
    """Train one model per seed, all seeds together; the only loop over seeds.

    The seeds form one ensemble ([`klax.fit_ensemble`][]): one compilation and
    one compiled loop for all of them. Seed `s` builds its model from
    `jr.fold_in(base_key, s)`; the batch orders come from
    `jr.fold_in(base_key, 10_000 + seeds[0])`, split over the seeds. The
    logged `"loss"` is the loss of each member on all of `data` (not on a
    batch). With `refine_steps > 0`, every member is then refined by at most
    that many Levenberg–Marquardt steps on the residual vector
    ([`refine_least_squares`][klax.mechanics.refine_least_squares]; never
    worse, constraints kept), and its history gets one more entry, at step
    `steps + refine_steps`, with the refined loss.

    **Returns:** one `(model, history, final_loss)` per seed, in order; each
    history holds that seed's `"loss"` curve.
    """
    full = tuple(jnp.asarray(a) for a in data)
    member_loss = eqx.filter_vmap(lambda model: stress_loss(model, full, None))
    full_loss = eqx.filter_jit(member_loss)
    loss_metric: Any = metric("loss", verbose=True)(
        lambda context: full_loss(context.state.model)
    )
    keys = jnp.stack([jr.fold_in(base_key, s) for s in seeds])
    ensemble = eqx.filter_jit(eqx.filter_vmap(make_model))(keys)
    ensemble, history = fit_ensemble(
        ensemble,
        full,
        batch_size=min(batch_size, len(data.stretch)),
        steps=steps,
        loss=stress_loss,
        optimizer=_adam(float(learning_rate)),
        metrics=[loss_metric],
        log_every=log_every,
        verbose=verbose,
        key=jr.fold_in(base_key, 10_000 + seeds[0]),
    )
    steps_logged, values = history["loss"] if history is not None else ([], [])
    steps_logged, values = list(steps_logged), [np.asarray(v) for v in values]
    if refine_steps > 0:
        refined = _refine_members(ensemble, full, int(refine_steps))
        ensemble = refined.model
        n = len(data.stretch)
        steps_logged.append(steps + int(refine_steps))
        values.append(np.asarray(refined.loss) / n)
    losses = np.asarray(full_loss(ensemble))
    results = []
    for i in range(len(seeds)):
        member = ensemble_member(ensemble, i)
        curve = [float(v[i]) for v in values]
        member_history = History(content={"loss": (list(steps_logged), curve)})
        results.append((member, member_history, float(losses[i])))
    return results


def fit_baseline(
    config: Mapping[str, Any],
    data: StressData,
    seeds: Sequence[int],
    *,
    base_key: PRNGKeyArray,
    max_steps: int = 200,
) -> list[tuple[Any, History, float]]:
    """Least-squares fits of a classical baseline, one per starting point.

    Seed `s` starts from `build_model(config, key=jr.fold_in(base_key, s))`
    (a different starting point per seed); the moduli are first solved
    exactly by linear least squares for the starting exponents, then all
    constants by Levenberg–Marquardt (at most `max_steps` steps) on the
    residual vector of the loss.

    **Returns:** one `(model, history, final_loss)` per seed, in order; the
    history holds the loss at the start (step 0) and at the end (step
    `max_steps`).
    """
    if config["model"] == "pann":
        raise ValueError("`fit_baseline` fits the classical baselines, not 'pann'.")
    full = tuple(jnp.asarray(a) for a in data)
    starts = [build_model(config, key=jr.fold_in(base_key, s)) for s in seeds]
    ensemble = stack_ensemble(starts)
    out = _fit_baseline_members(ensemble, full, int(max_steps))
    n = len(data.stretch)
    start_loss = np.asarray(
        eqx.filter_vmap(lambda m: stress_loss(m, full, None))(ensemble)
    )
    final = np.asarray(out.loss) / n
    results = []
    for i in range(len(seeds)):
        history = History(
            content={
                "loss": ([0, int(max_steps)], [float(start_loss[i]), float(final[i])])
            }
        )
        results.append((ensemble_member(out.model, i), history, float(final[i])))
    return results


def calibrate_seeds(
    config: Mapping[str, Any],
    curves: Mapping[str, LoadCurve],
    *,
    train_cases: Sequence[str],
    seeds: int,
    base_seed: int,
    steps: int,
    learning_rate: float,
    batch_size: int,
    loss: str = "mse",
    log_every: int = 100,
    verbose: int = 2,
    collapse_r2: float = 0.95,
    max_restarts: int = 2,
    refine_steps: int = 1000,
    report: Callable[[str], None] = print,
) -> tuple[SeedResult, list[SeedResult]]:
    """Calibrate `seeds` restarts, retrain collapsed PANN seeds, keep the best.

    PANN: Adam for `steps` steps on all seeds together, then at most
    `refine_steps` Levenberg–Marquardt steps per seed (`0`: none). A seed
    counts as collapsed only when all its hidden-to-output weights died (a
    structural failure that more training cannot undo); it is retrained from
    the next unused seed, for at most `max_restarts` rounds. A seed that
    merely fits worse is not collapsed and is not retrained: it just is not
    kept.

    Baselines (`"neo-hooke"`, `"mooney-rivlin"`, `"ogden3"`): least-squares fits
    from `seeds` different starting points
    ([`fit_baseline`][klax.mechanics.fit_baseline]; `steps`, `learning_rate`
    and `batch_size` are not used).

    The kept model has the lowest full-data training loss among the
    non-collapsed seeds (among all, if every seed collapsed). If even the kept
    model fits some training case with R² below `collapse_r2`, `report` gets
    a warning: restarts do not help then, the data or the model choice
    should be checked.

    **Returns:** `(best, all_results)`.
    """
    data = stress_data(curves, train_cases, loss)
    base_key = jr.key(base_seed)
    is_pann = config["model"] == "pann"

    def results_of(seed_list, trained):
        out = []
        for s, (m, h, value) in zip(seed_list, trained, strict=True):
            dead = is_pann and output_weights_dead(finalize(m))
            r2 = _train_r2(m, curves, train_cases)
            out.append(SeedResult(s, m, h, value, r2, dead))
        return out

    if not is_pann:
        seed_list = list(range(seeds))
        trained = fit_baseline(
            config, data, seed_list, base_key=base_key, max_steps=max(refine_steps, 200)
        )
        results = results_of(seed_list, trained)
    else:
        # One compiled construction, reused by every seed.
        make = eqx.filter_jit(lambda key: build_model(config, key=key))

        def run(seed_list):
            trained = train_seeds(
                make,
                data,
                seed_list,
                base_key=base_key,
                steps=steps,
                learning_rate=learning_rate,
                batch_size=batch_size,
                log_every=log_every,
                verbose=verbose,
                refine_steps=refine_steps,
            )
            return results_of(seed_list, trained)

        results = run(list(range(seeds)))
        next_seed = seeds
        pending = results
        for _ in range(max_restarts):
            bad = [r for r in pending if r.collapsed]
            if not bad:
                break
            fresh = list(range(next_seed, next_seed + len(bad)))
            next_seed += len(bad)
            for r, s in zip(bad, fresh, strict=True):
                report(
                    f"seed {r.seed} collapsed (every hidden-to-output weight is "
                    f"zero); restarting as seed {s}"
                )
            pending = run(fresh)
            results = results + pending
    good = [r for r in results if not r.collapsed] or results
    best = min(good, key=lambda r: r.loss if np.isfinite(r.loss) else np.inf)
    if best.train_r2:
        case, worst = min(best.train_r2.items(), key=lambda item: item[1])
        if not worst >= collapse_r2:
            report(
                f"warning: the best of {len(results)} seeds fits {case} with "
                f"training R² {worst:.3f} only; more seeds will not help: check "
                "the data (signs, units, the point at zero stretch) and the "
                "model choice"
            )
    return best, results


# ---------------------------------------------------------------------------
# Saving and loading


def save_model(directory: str | pathlib.Path, model: eqx.Module, config: dict) -> None:
    """Write `model.eqx` (finalised leaves) and `model.json` (`config`) to `directory`.

    `config` must describe the model for [`build_model`][klax.mechanics.build_model]
    (plus any provenance); a `format` and `dtype` entry are added.
    """
    directory = pathlib.Path(directory)
    final = finalize(model)
    leaves = [x for x in jax.tree.leaves(final) if eqx.is_inexact_array(x)]
    config = {
        "format": FORMAT,
        "dtype": str(leaves[0].dtype) if leaves else "float64",
        **config,
    }
    (directory / "model.json").write_text(json.dumps(config, indent=2) + "\n")
    eqx.tree_serialise_leaves(directory / "model.eqx", final)


def load_model(directory: str | pathlib.Path) -> Any:
    """Load a calibrated model written by `klax-calibrate` (or `save_model`).

    Rebuilds the model skeleton from `model.json` and reads the parameters
    from `model.eqx`. The result is finalised: call it on a deformation
    gradient, or pass it to the stress and load-case functions. Models
    calibrated in float64 are loaded in float64 only with x64 enabled (e.g.
    inside `with jax.enable_x64(True):`).

    **Arguments:**

    - `directory`: the output directory of a calibration.

    **Returns:** the potential, a callable `F -> W`.
    """
    directory = pathlib.Path(directory)
    try:
        config = json.loads((directory / "model.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"`load_model`: no model.json in {directory}; expected the output "
            "directory of klax-calibrate."
        ) from None
    if config.get("format") != FORMAT:
        raise ValueError(
            f"`load_model`: {directory / 'model.json'} has format "
            f"{config.get('format')!r}; expected {FORMAT!r}."
        )
    dtype = jnp.dtype(config.get("dtype", "float64"))
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # pyright: ignore[reportAttributeAccessIssue]
        dtype = jnp.dtype(jnp.float32)
    skeleton = finalize(build_model(config, key=jr.key(0)))
    skeleton = jax.tree.map(
        lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, skeleton
    )
    return eqx.tree_deserialise_leaves(directory / "model.eqx", skeleton)


def model_case_stress(model: Callable, case: str, stretch: np.ndarray) -> np.ndarray:
    """`P11` of a finalised incompressible potential along one load case."""
    return evaluate_cases(model, [case], [np.asarray(stretch, dtype=np.float64)])[0]
