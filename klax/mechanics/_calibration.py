"""Calibrating incompressible potentials to load-curve data with `klax.fit`.

The pieces of the `klax-calibrate` job, usable on their own: a loss on
nominal-stress data of several load cases, the seed loop with collapse
detection and restart, and saving/loading a calibrated model.
"""

import concurrent.futures
import functools
import json
import pathlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, PRNGKeyArray

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
from ._data import (
    LoadCurve,
    Measurements,
    as_measurements,
    fit_metrics,
    select,
    selection_mask,
)
from ._leastsquares import refine_least_squares, solve_linear_parameters
from ._loadcases import (
    ALL_LOAD_CASES,
    LOAD_CASES,
    STRESS_COMPONENTS,
    _incompressible_point,
    _isotropic_point,
    case_deformation,
    check_load_case,
)
from ._networks import reparametrize_nonnegative
from ._potentials import IncompressiblePANN, pann_inputs

MODEL_NAMES = ("pann", "neo-hooke", "mooney-rivlin", "ogden3", "cann")
LOSS_NAMES = ("mse", "mse-per-case", "relative")
FORMAT = "klax.mechanics.calibrated-model/1"
# The least-squares baselines run to convergence: from some starting points
# Levenberg–Marquardt needs 1000–2000 steps on small-strain (e.g. kPa tissue)
# data; converged solves stop early, so the cap costs only the slow starts.
BASELINE_MIN_STEPS = 5000


# ---------------------------------------------------------------------------
# Nominal stress of any incompressible potential at mixed load cases


def _stress_point(model: Callable, l1: Array, l2: Array, gamma: Array) -> Array:
    """`(P11, P22, P12)` stacked, closed form for invariant potentials, else AD."""
    if isinstance(model, AbstractIsotropicPotential):
        return jnp.stack(_isotropic_point(model.isotropic_energy, l1, l2, gamma))
    return jnp.stack(_incompressible_point(model, l1, l2, gamma))


def predict_stress(
    model: Callable,
    case_index: ArrayLike,
    stretch: ArrayLike,
    stretch_2: ArrayLike | None = None,
    component: ArrayLike | None = None,
) -> Array:
    """Nominal stresses of an incompressible potential at points of any load case.

    Every point has its own load case (`case_index`, a position in
    `ALL_LOAD_CASES`), deformation (`stretch`: `λ`, `λ1` or `γ`;
    `stretch_2`: `λ2` of biaxial points) and stress component (`component`,
    a position in `STRESS_COMPONENTS`: `0` P11, `1` P22, `2` P12). The
    pressure is eliminated from the traction-free thickness direction
    (`σ33 = 0`). Potentials with an invariant form
    ([`AbstractIsotropicPotential`][klax.mechanics.AbstractIsotropicPotential],
    e.g. the PANN) use the closed form, others (Ogden) the AD path. Works
    under `jax.jit`, `jax.vmap` and `jax.grad`.

    **Arguments:**

    - `model`: a finalised potential.
    - `case_index`: int array of load-case positions.
    - `stretch`: the first deformation parameter, same shape.
    - `stretch_2`: `λ2` of biaxial points (ignored elsewhere); `None`: ones.
    - `component`: int array of stress components; `None`: all `P11`.

    **Returns:** the predicted stresses, the shape of `stretch`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import MooneyRivlin, predict_stress
        >>> predict_stress(  # uniaxial P11 at λ = 2 and simple-shear P12 at γ = 0.5
        ...     MooneyRivlin(0.2, 0.05),
        ...     jnp.array([0, 4]),
        ...     jnp.array([2.0, 0.5]),
        ...     component=jnp.array([0, 2]),
        ... )
        Array([0.7875, 0.25  ], dtype=float32)
    """
    stretch = jnp.asarray(stretch)
    if not jnp.issubdtype(stretch.dtype, jnp.inexact):
        stretch = stretch.astype(jnp.result_type(float))
    case_index = jnp.asarray(case_index)
    stretch_2 = jnp.ones_like(stretch) if stretch_2 is None else jnp.asarray(stretch_2)
    component = (
        jnp.zeros(stretch.shape, jnp.int32)
        if component is None
        else jnp.asarray(component)
    )
    shapes = {a.shape for a in (case_index, stretch, stretch_2, component)}
    if len(shapes) != 1:
        raise ValueError(
            "`predict_stress`: case_index, stretch, stretch_2 and component must "
            f"have the same shape; got {sorted(shapes)}."
        )
    l1, l2, gamma = case_deformation(case_index, stretch, stretch_2)
    flat = [a.reshape(-1) for a in (l1, l2, gamma)]
    values = jax.vmap(lambda a, b, c: _stress_point(model, a, b, c))(*flat)
    picked = jnp.take_along_axis(values, component.reshape(-1, 1), axis=1)
    return picked.reshape(stretch.shape)


def predict_nominal_stress_11(
    model: Callable, case_index: Array, stretch: Array
) -> Array:
    """`P11` of an incompressible potential at points of mixed one-stretch load cases.

    [`predict_stress`][klax.mechanics.predict_stress] with every component
    `P11`. Potentials with an invariant form
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
    return predict_stress(model, case_index, stretch)


class StressData(NamedTuple):
    """Training observations: one measured stress component per entry.

    `stretch` (`λ`, `λ1` of biaxial or `γ` of simple-shear points),
    `case_index` (position in `ALL_LOAD_CASES`), `stress` (the measured value
    in MPa), `weight` (the loss weight), `stretch_2` (`λ2` of biaxial points,
    `1` elsewhere) and `component` (position in `STRESS_COMPONENTS`): NumPy
    or JAX arrays of equal length. The last two may be `None` (all ones,
    all `P11`): the one-stretch data of earlier versions.
    """

    stretch: Any
    case_index: Any
    stress: Any
    weight: Any
    stretch_2: Any = None
    component: Any = None


def stress_scale(data: "StressData | Measurements") -> float:
    """The stress scale of data: the root mean square of the measured stresses, in MPa.

    `stress_data` divides the weights of the `"mse"` and `"mse-per-case"`
    losses by its square, which makes the loss dimensionless (the same for
    data given in Pa, kPa or MPa). A useful starting magnitude for a model.
    """
    stress = np.asarray(data.stress, dtype=np.float64)
    value = float(np.sqrt(np.mean(stress**2))) if stress.size else 0.0
    return value if value > 0 else 1.0


def stress_data(
    data: "Measurements | Mapping[str, LoadCurve]",
    cases: Sequence[str] | None = None,
    loss: str = "mse",
) -> StressData:
    """Stack the observations of `cases` into training arrays with per-point weights.

    **Arguments:**

    - `data`: [`Measurements`][klax.mechanics.Measurements] (any mix of load
      cases) or a dict of one-stretch [`LoadCurve`][klax.mechanics.LoadCurve]s.
    - `cases`: the selection to use: load-case names, and `biaxial@λ1` for
      the biaxial curves at one held stretch (see
      [`parse_selection`][klax.mechanics.parse_selection]); `None`: all.
    - `loss`: `"mse"` (all observations weigh the same), `"mse-per-case"`
      (every curve, i.e. load case, held `λ1` and stress component, weighs
      the same in total) or `"relative"` (squared error relative to the
      measured stress, floored at 5 % of the curve's largest stress, so that
      points at zero stress stay finite). The `"mse"` weights are
      `1/s²` and the `"mse-per-case"` weights average `1/s²`, with `s` the
      [`stress_scale`][klax.mechanics.stress_scale] of the selected data: the
      loss is dimensionless and does not depend on the unit of the data.

    **Returns:** a [`StressData`][klax.mechanics.StressData] of float64/int32
    NumPy arrays.
    """
    if loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}; got {loss!r}.")
    measured = as_measurements(data)
    if cases is not None:
        for entry in cases:
            if entry.partition("@")[0] not in ALL_LOAD_CASES:
                raise ValueError(
                    f"`stress_data`: unknown load case {entry!r}; expected one of "
                    f"{', '.join(ALL_LOAD_CASES)}."
                )
    chosen = select(measured, cases)
    if chosen.size == 0:
        raise ValueError(f"`stress_data`: no observations selected by {cases!r}.")
    # Keep the order of `cases` (the order of the legacy one-stretch data).
    if cases is not None:
        order = np.concatenate(
            [np.flatnonzero(selection_mask(chosen, [entry])) for entry in cases]
        )
        _, first = np.unique(order, return_index=True)
        chosen = chosen.take(order[np.sort(first)])
    n = chosen.size
    curves = chosen.curves()
    weight = np.ones(n)
    if loss == "mse-per-case":
        for curve in curves:
            weight[curve.index] = n / (len(curves) * len(curve.index))
    elif loss == "relative":
        for curve in curves:
            stress = chosen.stress[curve.index]
            floor = 0.05 * max(float(np.max(np.abs(stress))), 1e-300)
            weight[curve.index] = 1.0 / np.maximum(np.abs(stress), floor) ** 2
    if loss != "relative":
        weight = weight / stress_scale(chosen) ** 2
    return StressData(
        chosen.stretch.astype(np.float64),
        chosen.case_index.astype(np.int32),
        chosen.stress.astype(np.float64),
        weight,
        chosen.stretch_2.astype(np.float64),
        chosen.component.astype(np.int32),
    )


def _batch_fields(batch: Any) -> tuple[Any, ...]:
    fields = tuple(batch)
    if len(fields) == 4:
        fields = (*fields, None, None)
    if len(fields) != 6:
        raise ValueError(
            "A stress batch is a StressData (or a tuple of its 4 or 6 arrays); got "
            f"{len(fields)} fields."
        )
    return fields


def residuals(model: Callable, data: Any) -> Array:
    """The weighted residual vector of a model on training data.

    `sqrt(weight) * (P̂ - P)`, one entry per observation, so that
    `stress_loss(model, data) == mean(residuals(model, data) ** 2)`: the
    residual function of a least-squares solver (e.g.
    `optimistix.LevenbergMarquardt`). Dimensionless for the `"mse"` weights
    of [`stress_data`][klax.mechanics.stress_data].

    **Arguments:**

    - `model`: a finalised incompressible potential.
    - `data`: a [`StressData`][klax.mechanics.StressData] (NumPy or JAX
      arrays), or a tuple of its 4 or 6 arrays.

    **Returns:** the residuals, shape `(n,)`.
    """
    stretch, case_index, stress, weight, stretch_2, component = _batch_fields(data)
    predicted = predict_stress(model, case_index, stretch, stretch_2, component)
    return jnp.sqrt(jnp.asarray(weight)) * (predicted - jnp.asarray(stress))


class StressLoss(Loss):
    """Weighted mean squared error of the measured nominal-stress components.

    The batch is a [`StressData`][klax.mechanics.StressData] (or a tuple of its
    4 or 6 arrays); the loss is `mean(weight * (P̂ - P)²)`, the mean square of
    [`residuals`][klax.mechanics.residuals].
    """

    def value(self, model: Any, batch: Any, run_state: Any) -> Array:
        del run_state
        return jnp.mean(residuals(model, batch) ** 2)


stress_loss = StressLoss()


# ---------------------------------------------------------------------------
# Models


def training_invariants(
    data: "StressData | Measurements",
) -> tuple[np.ndarray, np.ndarray]:
    """`(I1, I2)` at the observations' deformations (incompressible), NumPy arrays."""
    case = np.asarray(data.case_index)
    stretch = np.asarray(data.stretch, dtype=np.float64)
    stretch_2 = (
        np.ones_like(stretch)
        if data.stretch_2 is None
        else np.asarray(data.stretch_2, dtype=np.float64)
    )
    # The in-plane block of F, as in `case_deformation`.
    shear = case == 4
    l1 = np.where(shear, 1.0, stretch)
    l2 = np.select(
        [case == 0, case == 1, case == 3],
        [np.abs(l1) ** -0.5, l1, stretch_2],
        1.0,
    )
    gamma = np.where(shear, stretch, 0.0)
    l3 = 1.0 / (l1 * l2)
    # C of F = [[λ1, γ, 0], [0, λ2, 0], [0, 0, λ3]].
    c11, c12, c22, c33 = l1**2, l1 * gamma, gamma**2 + l2**2, l3**2
    I1 = c11 + c22 + c33
    I2 = c11 * c22 - c12**2 + (c11 + c22) * c33
    return I1, I2


# One small compiled program instead of one per operation.
_pann_inputs = jax.jit(pann_inputs, static_argnums=2)


def invariant_scales(
    data: "Measurements | Mapping[str, LoadCurve]",
    cases: Sequence[str] | None,
    invariants: str,
) -> tuple[float, ...]:
    """Ranges of the shifted PANN inputs over the training deformations.

    Used as `input_scale` of [`IncompressiblePANN`][klax.mechanics.IncompressiblePANN]:
    the inputs then lie in `[0, 1]` on the data. (Ĩ2 reaches several thousand
    in equibiaxial tension while Ĩ1 stays below a hundred; unscaled inputs
    make the first updates kill the hidden units, see `benchmarks/collapse.py`.)
    Every kind of load case counts (biaxial, simple shear, compression).

    **Arguments:**

    - `data`: [`Measurements`][klax.mechanics.Measurements] or a dict of
      one-stretch load curves.
    - `cases`: the training selection (as for
      [`stress_data`][klax.mechanics.stress_data]); `None`: all.
    - `invariants`: the PANN input set, a key of
      [`INVARIANT_SETS`][klax.mechanics.INVARIANT_SETS].

    **Returns:** one scale per input of the set
    ([`pann_inputs`][klax.mechanics.pann_inputs]), each `1.0` where the
    range vanishes.
    """
    chosen = select(as_measurements(data), cases)
    I1, I2 = training_invariants(chosen)
    largest = np.max(np.asarray(_pann_inputs(I1, I2, invariants)), axis=0)
    return tuple(float(v) if v > 1e-8 else 1.0 for v in largest)


def build_model(config: Mapping[str, Any], *, key: PRNGKeyArray) -> eqx.Module:
    """Build the (unfinalised) model described by a calibration config.

    Keys read: `model` (one of `MODEL_NAMES`) and, for `"pann"`,
    `width_sizes`, `invariants`, `input_scale`, `floor`, `energy_scale`
    (default 1) and `positivity` (`"clamp"`: `klax.NonNegative` projection,
    `"softplus"`: positive reparametrisation). The classical baselines start
    from a point drawn from `key` (the starting Ogden exponents differ by
    key), so restarts of a least-squares fit differ in their starting point.
    For `"cann"`: `terms` (a list of `[invariant, power, activation]`),
    `invariants`, `input_scale`, `energy_scale` and `log_limit` (see
    [`CANN`][klax.mechanics.CANN]).
    """
    name = config["model"]
    if name == "cann":
        from ._cann import cann_config_model

        return cann_config_model(config, key=key)
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


_predict_jit = eqx.filter_jit(predict_stress)
_initial_shear_modulus = eqx.filter_jit(lambda model: model.initial_shear_modulus())


def evaluate_stress(
    model: Callable,
    case_index: ArrayLike,
    stretch: ArrayLike,
    stretch_2: ArrayLike | None = None,
    component: ArrayLike | None = None,
) -> np.ndarray:
    """[`predict_stress`][klax.mechanics.predict_stress] in one compiled call, on NumPy.

    The points are padded to a power of two (at least 256), so repeated
    evaluations of different sizes reuse one compilation. Runs in the dtype
    of the default float (float64 inside `jax.enable_x64(True)`).

    **Returns:** the stresses in MPa, a float64 NumPy array of the shape of
    `stretch`.
    """
    stretch = np.asarray(stretch, dtype=np.float64)
    shape = stretch.shape
    parts = [
        np.asarray(case_index, dtype=np.int32).reshape(-1),
        stretch.reshape(-1),
        (np.ones(shape) if stretch_2 is None else np.asarray(stretch_2)).reshape(-1),
        (
            np.zeros(shape, np.int32) if component is None else np.asarray(component)
        ).reshape(-1),
    ]
    total = parts[1].size
    padded = max(256, 1 << max(total - 1, 0).bit_length())
    fill = (0, 1.0, 1.0, 0)
    dtypes = (np.int32, np.float64, np.float64, np.int32)
    arrays = []
    for part, value, dtype in zip(parts, fill, dtypes, strict=True):
        full = np.full(padded, value, dtype=dtype)
        full[:total] = part
        arrays.append(full)
    real = jnp.result_type(float)
    index, lam, lam_2, comp = arrays
    out = _predict_jit(
        model,
        jnp.asarray(index),
        jnp.asarray(lam, real),
        jnp.asarray(lam_2, real),
        jnp.asarray(comp),
    )
    return np.asarray(out, dtype=np.float64)[:total].reshape(shape)


def evaluate_measurements(model: Callable, data: Measurements) -> np.ndarray:
    """The model's stress (MPa) at every observation of `data`, one compiled call."""
    return evaluate_stress(
        model, data.case_index, data.stretch, data.stretch_2, data.component
    )


def curve_r2(
    model: Callable,
    data: "Measurements | Mapping[str, LoadCurve]",
    cases: Sequence[str] | None = None,
) -> dict[str, float]:
    """R² of a finalised potential on every curve of the selected data.

    **Arguments:**

    - `model`: a finalised incompressible potential.
    - `data`: [`Measurements`][klax.mechanics.Measurements] or a dict of
      one-stretch load curves.
    - `cases`: a selection (see [`stress_data`][klax.mechanics.stress_data]);
      `None`: all.

    **Returns:** a dict from curve name to R². The name is the curve label
    (`"uniaxial"`, `"biaxial@1.5"`, `"simple_shear"`), followed by the
    component for every component but a one-stretch curve's `P11` (e.g.
    `"biaxial@1.5 P22"`, `"simple_shear P12"`): one-stretch data keep their
    load-case names.
    """
    chosen = select(as_measurements(data), cases)
    predicted = evaluate_measurements(model, chosen)
    return {
        curve_name(c): fit_metrics(chosen.stress[c.index], predicted[c.index]).r2
        for c in chosen.curves()
    }


def curve_name(curve: Any) -> str:
    """`"uniaxial"` for one-stretch `P11` curves, else `"<label> <component>"`."""
    if curve.load_case in LOAD_CASES and curve.component == "P11":
        return curve.label
    return f"{curve.label} {curve.component}"


def evaluate_cases(
    model: Callable, cases: Sequence[str], stretches: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """`P11` of a finalised potential along several load cases, in one compiled call.

    The points are padded to a power of two (at least 256), so repeated
    evaluations of different sizes reuse one compilation.
    """
    sizes = [len(s) for s in stretches]
    index = np.concatenate(
        [
            np.full(n, LOAD_CASES.index(check_load_case(c, "evaluate_cases")), np.int32)
            for c, n in zip(cases, sizes, strict=True)
        ]
        or [np.zeros(0, np.int32)]
    )
    stretch = np.concatenate([np.asarray(s, np.float64) for s in stretches] or [[]])
    out = evaluate_stress(model, index, stretch)
    return list(np.split(out, np.cumsum(sizes)[:-1]))


def _train_r2(model, curves, cases) -> dict[str, float]:
    return curve_r2(finalize(model), curves, cases)


@eqx.filter_jit
def _refine_member(model: Any, data: Any, max_steps: int) -> Any:
    """Levenberg–Marquardt on one model; compiled once, called for every seed.

    One member at a time rather than `vmap` over the ensemble: the solve is
    compile-bound (tens of parameters, a fraction of a second to run for all
    seeds), and the unbatched program traces in about a third and compiles
    in about three quarters of the time of the batched one, for the same
    run time.
    """
    return refine_least_squares(model, residuals, data, max_steps=max_steps)


@eqx.filter_jit
def _fit_baseline_members(ensemble: Any, data: Any, max_steps: int) -> Any:
    """Least-squares fits of a baseline from every member's starting point."""

    def fit(model):
        model = solve_linear_parameters(model, residuals, data, linear_parameters)
        return refine_least_squares(model, residuals, data, max_steps=max_steps)

    return eqx.filter_vmap(fit)(ensemble)


def _compile_ahead(
    make_model: Callable[[PRNGKeyArray], eqx.Module],
    key: PRNGKeyArray,
    data: Any,
    max_steps: int,
) -> "list[concurrent.futures.Future]":
    """Compile the least-squares solve and the stress evaluation in a thread.

    Builds a placeholder model of the shapes `make_model` gives (traced
    abstractly with `eqx.filter_eval_shape`, filled with NumPy zeros, no
    computation) and calls `_refine_member`, `evaluate_stress` and
    `_initial_shear_modulus` on it in a background thread. That fills their
    compilation caches while the main thread builds the seeds' models: XLA
    compiles without holding the GIL, so on two cores the compilation and
    the construction overlap. The real calls then reuse the compiled
    programs (the caches match on structure, non-array fields, shapes and
    dtypes; anything that differs simply compiles again). Returns the
    futures of the solve's and the evaluation's compilations (none where
    the model cannot be traced abstractly).
    """
    if jax.config.jax_disable_jit:  # pyright: ignore[reportAttributeAccessIssue]
        return []  # nothing to compile
    try:
        abstract = eqx.filter_eval_shape(make_model, key)
    except Exception:  # a constructor that needs concrete values
        return []

    def placeholder(leaf):
        if isinstance(leaf, jax.ShapeDtypeStruct):
            if not jnp.issubdtype(leaf.dtype, jnp.number) or leaf.weak_type:
                raise TypeError("no NumPy placeholder")
            return np.zeros(leaf.shape, leaf.dtype)
        return leaf

    try:
        like = jax.tree.map(placeholder, abstract)
    except TypeError:
        return []
    # Configuration contexts are per thread: carry the caller's x64 setting.
    x64 = bool(jax.config.jax_enable_x64)  # pyright: ignore[reportAttributeAccessIssue]

    def solve():
        with jax.enable_x64(x64):
            jax.block_until_ready(_refine_member(like, data, max_steps))

    def evaluate():
        with jax.enable_x64(x64):
            final = finalize(like)
            evaluate_stress(final, np.zeros(1, np.int32), np.ones(1))
            if isinstance(final, AbstractIsotropicPotential):
                _initial_shear_modulus(final)

    # One worker: the evaluation compiles while the seeds are solved.
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    futures = [executor.submit(solve), executor.submit(evaluate)]
    executor.shutdown(wait=False)
    return futures


def _wait(futures: Sequence[concurrent.futures.Future]) -> None:
    """Wait for compilations started ahead; a failed one compiles (or raises)
    again on the real call."""
    for future in futures:
        try:
            future.result()
        except Exception:
            pass


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
    """Train one model per seed; the only loop over seeds.

    The Adam phase trains the seeds as one ensemble ([`klax.fit_ensemble`][]):
    one compilation and one compiled loop for all of them. Seed `s` builds
    its model from `jr.fold_in(base_key, s)`; the batch orders come from
    `jr.fold_in(base_key, 10_000 + seeds[0])`, split over the seeds. The
    logged `"loss"` is the loss of each member on all of `data` (not on a
    batch). With `steps=0` there is no Adam phase (the history starts with
    the initial loss). With `refine_steps > 0`, every member is then refined
    by at most that many Levenberg–Marquardt steps on the residual vector
    ([`refine_least_squares`][klax.mechanics.refine_least_squares]; never
    worse, constraints kept; one compilation, run once per seed), and its
    history gets one more entry, at step `steps + refine_steps`, with the
    refined loss.

    **Returns:** one `(model, history, final_loss)` per seed, in order; each
    history holds that seed's `"loss"` curve.
    """
    full = tuple(jnp.asarray(a) for a in data)
    member_loss = eqx.filter_vmap(lambda model: stress_loss(model, full, None))
    full_loss = eqx.filter_jit(member_loss)
    loss_metric: Any = metric("loss", verbose=True)(
        lambda context: full_loss(context.state.model)
    )
    n = len(data.stretch)
    ahead: list[concurrent.futures.Future] = []
    if steps > 0:
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
        members = [ensemble_member(ensemble, i) for i in range(len(seeds))]
    else:
        # No Adam: the least-squares solve starts from the initialisation
        # (built one by one: cheaper than compiling a vmapped construction),
        # its compilation started first, to run while the models are built.
        ensemble = None
        if refine_steps > 0:  # any key gives the shapes
            ahead = _compile_ahead(make_model, base_key, full, int(refine_steps))
        members = [make_model(jr.fold_in(base_key, s)) for s in seeds]
        steps_logged, values = [0], []
    if refine_steps > 0:
        _wait(ahead[:1])
        refined = [_refine_member(m, full, int(refine_steps)) for m in members]
        _wait(ahead[1:])
        members = [r.model for r in refined]
        if steps == 0:  # the loss of the initialisation, from the solve itself
            values.append(np.asarray([r.initial_loss for r in refined]) / n)
        steps_logged.append(steps + int(refine_steps))
        losses = np.asarray([r.loss for r in refined]) / n
        values.append(losses)
    else:
        stacked = ensemble if ensemble is not None else stack_ensemble(members)
        losses = np.asarray(full_loss(stacked))
        if steps == 0:
            values.append(losses)
    results = []
    for i, member in enumerate(members):
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
    curves: "Measurements | Mapping[str, LoadCurve]",
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

    PANN: Adam for `steps` steps on all seeds together (`0`: none), then at
    most `refine_steps` Levenberg–Marquardt steps per seed (`0`: none). A seed
    counts as collapsed only when all its hidden-to-output weights died (a
    structural failure that more training cannot undo); it is retrained from
    the next unused seed, for at most `max_restarts` rounds. A seed that
    merely fits worse is not collapsed and is not retrained: it just is not
    kept.

    Baselines (`"neo-hooke"`, `"mooney-rivlin"`, `"ogden3"`): least-squares fits
    from `seeds` different starting points, each run to convergence (at most
    `max(refine_steps, 5000)` steps)
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
            config,
            data,
            seed_list,
            base_key=base_key,
            max_steps=max(refine_steps, BASELINE_MIN_STEPS),
        )
        results = results_of(seed_list, trained)
    else:
        # With Adam: one compiled (vmapped) construction, reused by every seed;
        # without, an eager one per seed is cheaper than compiling.
        def make(key):
            return build_model(config, key=key)

        if steps > 0:
            make = eqx.filter_jit(make)

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
    inside `with jax.enable_x64(True):`); with x64 off they are loaded as
    float32, with a `UserWarning` that says so.

    **Arguments:**

    - `directory`: the output directory of a calibration.

    **Returns:** the potential, a callable `F -> W`.

    Example:
        A model saved in float64 comes back in float32, with a warning, unless
        x64 is on:

        >>> import shutil, tempfile, warnings
        >>> import jax, jax.random as jr
        >>> import klax.mechanics as km
        >>> directory, config = tempfile.mkdtemp(), {"model": "neo-hooke"}
        >>> with jax.enable_x64(True):
        ...     km.save_model(directory, km.build_model(config, key=jr.key(0)), config)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     str(km.load_model(directory).mu.dtype), caught[0].category.__name__
        ('float32', 'UserWarning')
        >>> with jax.enable_x64(True):
        ...     str(km.load_model(directory).mu.dtype)
        'float64'
        >>> shutil.rmtree(directory)
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
        warnings.warn(
            f"`load_model`: {directory} holds a float64 model, loaded as float32 "
            "because x64 is off; enable it (`jax.config.update('jax_enable_x64', "
            "True)` or `with jax.enable_x64(True):`) to keep float64.",
            stacklevel=2,
        )
        dtype = jnp.dtype(jnp.float32)
    skeleton = finalize(build_model(config, key=jr.key(0)))
    skeleton = jax.tree.map(
        lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, skeleton
    )
    return eqx.tree_deserialise_leaves(directory / "model.eqx", skeleton)


def model_case_stress(model: Callable, case: str, stretch: np.ndarray) -> np.ndarray:
    """`P11` of a finalised incompressible potential along one load case."""
    return evaluate_cases(model, [case], [np.asarray(stretch, dtype=np.float64)])[0]


def model_curve_stress(
    model: Callable,
    load_case: str,
    component: str,
    sweep: np.ndarray,
    stretch_1: float | None = None,
) -> np.ndarray:
    """One stress component of a finalised incompressible potential along a curve.

    **Arguments:**

    - `model`: the potential.
    - `load_case`: a name in `ALL_LOAD_CASES`.
    - `component`: `"P11"`, `"P22"` or `"P12"`.
    - `sweep`: the swept deformation: `λ`, `λ2` (biaxial, at the held
      `stretch_1`) or `γ` (simple shear).
    - `stretch_1`: the held `λ1` of a biaxial curve.

    **Returns:** the stresses in MPa, float64, the shape of `sweep`.
    """
    sweep = np.asarray(sweep, dtype=np.float64)
    case = ALL_LOAD_CASES.index(load_case)
    if load_case == "biaxial":
        if stretch_1 is None:
            raise ValueError("`model_curve_stress`: a biaxial curve needs stretch_1.")
        first, second = np.full_like(sweep, stretch_1), sweep
    else:
        first, second = sweep, np.ones_like(sweep)
    return evaluate_stress(
        model,
        np.full(sweep.shape, case, np.int32),
        first,
        second,
        np.full(sweep.shape, STRESS_COMPONENTS.index(component), np.int32),
    )
