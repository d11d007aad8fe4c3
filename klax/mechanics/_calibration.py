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

from .._ensemble import ensemble_member, fit_ensemble
from .._logging import History, metric
from .._losses import Loss
from .._wrappers import finalize, unwrap
from ..nn import InputSplitLinear
from ._baselines import AbstractIsotropicPotential, MooneyRivlin, NeoHooke, Ogden
from ._data import LoadCurve, fit_metrics
from ._kinematics import REFERENCE_I2_POLYCONVEX
from ._loadcases import LOAD_CASES, check_load_case
from ._networks import reparametrize_nonnegative
from ._potentials import IncompressiblePANN

MODEL_NAMES = ("pann", "neo-hooke", "mooney-rivlin", "ogden3", "cann")
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
) -> tuple[float, float]:
    """Ranges of the two shifted PANN inputs over the training points.

    Used as `input_scale` of [`IncompressiblePANN`][klax.mechanics.IncompressiblePANN]:
    the inputs then lie in `[0, 1]` on the data. (Ĩ2 reaches several thousand
    in equibiaxial tension while Ĩ1 stays below a hundred; unscaled inputs
    make the first updates kill the hidden units, see `benchmarks/collapse.py`.)
    """
    I1_max, I2_max = 0.0, 0.0
    for case in cases:
        lam = np.asarray(curves[case].stretch, dtype=np.float64)
        l1, l2, l3 = {
            "uniaxial": (lam, lam**-0.5, lam**-0.5),
            "equibiaxial": (lam, lam, lam**-2.0),
            "pure_shear": (lam, np.ones_like(lam), 1.0 / lam),
        }[check_load_case(case, "invariant_scales")]
        I1 = l1**2 + l2**2 + l3**2
        I2 = (l1 * l2) ** 2 + (l2 * l3) ** 2 + (l1 * l3) ** 2
        I1_max = max(I1_max, float(np.max(I1 - 3.0)))
        if invariants == "polyconvex":
            I2_max = max(I2_max, float(np.max(I2**1.5 - REFERENCE_I2_POLYCONVEX)))
        else:
            I2_max = max(I2_max, float(np.max(I2 - 3.0)))
    return (I1_max if I1_max > 1e-8 else 1.0, I2_max if I2_max > 1e-8 else 1.0)


def build_model(config: Mapping[str, Any], *, key: PRNGKeyArray) -> eqx.Module:
    """Build the (unfinalised) model described by a calibration config.

    Keys read: `model` (one of `MODEL_NAMES`) and, for `"pann"`,
    `width_sizes`, `invariants`, `input_scale`, `floor` and `positivity`
    (`"clamp"`: `klax.NonNegative` projection, `"softplus"`: positive
    reparametrisation); for `"cann"`, `terms` (a list of `[invariant, power,
    activation]`), `invariants`, `input_scale`, `energy_scale` and
    `log_limit` (see [`CANN`][klax.mechanics.CANN]).
    """
    name = config["model"]
    if name == "cann":
        from ._cann import cann_config_model

        return cann_config_model(config, key=key)
    if name == "pann":
        model = IncompressiblePANN(
            tuple(config["width_sizes"]),
            config.get("invariants", "polyconvex"),
            input_scale=tuple(config.get("input_scale", (1.0, 1.0))),
            floor=config.get("floor", 0.0),
            key=key,
        )
        if config.get("positivity", "clamp") == "softplus":
            model = reparametrize_nonnegative(model)
        return model
    # Baselines start from generic values of the right order for rubber (MPa).
    if name == "neo-hooke":
        return NeoHooke(0.3)
    if name == "mooney-rivlin":
        return MooneyRivlin(0.15, 0.01)
    if name == "ogden3":
        return Ogden([0.5, 0.01, -0.01], [1.5, 4.0, -2.0])
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
    the final full-data training loss and the training R² per case."""

    seed: int
    model: Any
    history: History | None
    loss: float
    train_r2: dict[str, float]


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
) -> list[tuple[Any, History | None, float]]:
    """Train one model per seed, all seeds together; the only loop over seeds.

    The seeds form one ensemble ([`klax.fit_ensemble`][]): one compilation and
    one compiled loop for all of them. Seed `s` builds its model from
    `jr.fold_in(base_key, s)`; the batch orders come from
    `jr.fold_in(base_key, 10_000 + seeds[0])`, split over the seeds. The
    logged `"loss"` is the loss of each member on all of `data` (not on a
    batch).

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
    losses = np.asarray(full_loss(ensemble))
    steps_logged, values = history["loss"] if history is not None else ([], [])
    results = []
    for i in range(len(seeds)):
        member = ensemble_member(ensemble, i)
        curve = [float(np.asarray(v)[i]) for v in values]
        member_history = History(content={"loss": (list(steps_logged), curve)})
        results.append((member, member_history, float(losses[i])))
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
    report: Callable[[str], None] = print,
) -> tuple[SeedResult, list[SeedResult]]:
    """Train `seeds` restarts, restart collapsed PANN seeds, keep the best.

    A PANN seed counts as collapsed when all its hidden-to-output weights are
    (near) zero or its training R² of some case is below `collapse_r2`; it
    is retrained from the next unused seed, for at most `max_restarts`
    rounds. The kept model has the lowest full-data training loss among the
    non-collapsed seeds (among all, if every seed collapsed).

    **Returns:** `(best, all_results)`.
    """
    data = stress_data(curves, train_cases, loss)
    base_key = jr.key(base_seed)

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
        )
        return [
            SeedResult(s, m, h, value, _train_r2(m, curves, train_cases))
            for s, (m, h, value) in zip(seed_list, trained, strict=True)
        ]

    def collapsed(result: SeedResult) -> bool:
        if config["model"] != "pann":
            return False
        worst = min(result.train_r2.values())
        return output_weights_dead(finalize(result.model)) or not worst >= collapse_r2

    results = run(list(range(seeds)))
    next_seed = seeds
    pending = results
    for _ in range(max_restarts):
        bad = [r for r in pending if collapsed(r)]
        if not bad:
            break
        fresh = list(range(next_seed, next_seed + len(bad)))
        next_seed += len(bad)
        for r, s in zip(bad, fresh, strict=True):
            report(
                f"seed {r.seed} collapsed (worst training R² "
                f"{min(r.train_r2.values()):.3f}); restarting as seed {s}"
            )
        pending = run(fresh)
        results = results + pending
    good = [r for r in results if not collapsed(r)] or results
    best = min(good, key=lambda r: r.loss if np.isfinite(r.loss) else np.inf)
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
