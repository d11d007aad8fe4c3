"""Automated model discovery: a regularisation path of sparse CANNs in one
ensemble fit, a selection rule, a least-squares polish, and the discovered law
as a formula (text and JSON) that can be read back and evaluated.

The path trainer only needs a loss (a [`klax.Loss`][] of the model and a
batch) and the training data as a pytree of arrays with a leading point
axis; the default is the nominal-stress loss of
[`stress_data`][klax.mechanics.stress_data].
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from .._ensemble import ensemble_member, fit_ensemble
from .._logging import History
from .._losses import Loss
from .._misc import check_int
from .._wrappers import apply, finalize
from ._calibration import curve_r2, residuals as stress_residuals, stress_loss
from ._cann import (
    CANN,
    CANNTerm,
    CompressibleCANN,
    SparseWeights,
    _check_p,
    active_terms,
    sparse_adam,
    with_strength,
)
from ._data import LoadCurve
from ._kinematics import (
    REFERENCE_I2_POLYCONVEX,
    _cofactor,
    _det,
    as_deformation_gradient,
    check_positive_jacobian,
)
from ._loadcases import check_load_case

LAW_FORMAT = "klax.mechanics.discovered-law/1"


def data_energy_scale(data: Any, cases: Sequence[str] | None = None) -> float:
    """The strain energy density reached in the data (MPa): a CANN `energy_scale`.

    For a dict of load curves: the largest work done on an incompressible
    specimen, `∫ P11 dλ` in uniaxial tension and pure shear and `2 ∫ P11 dλ`
    in equibiaxial tension (two loaded directions), integrated from the
    reference state `(1, 0)` through the measured points (trapezoidal rule).
    For general [`Measurements`][klax.mechanics.Measurements] (other load
    cases): the RMS training stress ([`stress_scale`][klax.mechanics.stress_scale]),
    the same order of magnitude. With it as `energy_scale` the CANN weights
    are of order one whatever the stress unit or stiffness.
    """
    from ._calibration import stress_data, stress_scale

    if isinstance(data, Mapping) and all(
        isinstance(c, LoadCurve) for c in data.values()
    ):
        best = 0.0
        for case in data if cases is None else cases:
            curve = data[check_load_case(case, "data_energy_scale")]
            lam = np.concatenate([[1.0], np.asarray(curve.stretch, np.float64)])
            stress = np.concatenate([[0.0], np.asarray(curve.stress, np.float64)])
            factor = 2.0 if case == "equibiaxial" else 1.0
            work = factor * float(
                np.sum(0.5 * (stress[1:] + stress[:-1]) * np.diff(lam))
            )
            best = max(best, abs(work))
    else:
        best = float(stress_scale(stress_data(data, cases)))
    return best if best > 1e-12 else 1.0


# ---------------------------------------------------------------------------
# The path


def _leading_size(data: PyTree) -> int:
    leaves = [x for x in jax.tree.leaves(data) if np.ndim(x) > 0]
    if not leaves:
        raise ValueError("`regularisation_path`: data holds no arrays with points.")
    return int(np.shape(leaves[0])[0])


def _as_jax(data: PyTree) -> PyTree:
    dtype = jnp.result_type(float)

    def convert(x):
        x = np.asarray(x)
        return jnp.asarray(x, dtype if np.issubdtype(x.dtype, np.floating) else None)

    return jax.tree.map(convert, data)


def _sparse_node(model: Any) -> SparseWeights:
    nodes = [
        x
        for x in jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, SparseWeights))
        if isinstance(x, SparseWeights)
    ]
    if len(nodes) != 1:
        raise ValueError(
            "`regularisation_path` needs a model with exactly one SparseWeights "
            f"node (a CANN built with sparse=True); found {len(nodes)}."
        )
    return nodes[0]


def largest_strength(model: Any, data: PyTree, loss: Loss = stress_loss) -> float:
    """The L1 strength from which on every term is pruned at the initial inner weights.

    With all outer weights `a = 0`, the optimality condition of
    `min loss + λ Σ a` over `a ≥ 0` holds exactly when `λ ≥ max_k(−∂loss/∂a_k)`
    (the start of a lasso path). Regularisation paths are log-spaced below it.
    """
    data = _as_jax(data)
    zero = eqx.tree_at(
        lambda m: _sparse_node(m).parameter,
        model,
        jnp.zeros_like(_sparse_node(model).parameter),
    )

    def value(a):
        return loss(
            eqx.tree_at(lambda m: _sparse_node(m).parameter, zero, a), data, None
        )

    grad = jax.grad(value)(_sparse_node(zero).parameter)
    top = float(jnp.max(-grad))
    if not (np.isfinite(top) and top > 0):
        raise ValueError(
            "`largest_strength`: the loss does not decrease for any term at zero "
            "weights (the data may be all zero, or the model's inputs out of range)."
        )
    return top


def path_strengths(
    model: Any, data: PyTree, n: int = 16, ratio: float = 1e-4, loss: Loss = stress_loss
) -> np.ndarray:
    """`n` strengths log-spaced from `largest_strength(model, data)` down by `ratio`."""
    n = check_int(n, "`path_strengths(n=...)`", minimum=1)
    if not 0 < ratio < 1:
        raise ValueError(
            f"`path_strengths(ratio=...)` must lie in (0, 1); got {ratio!r}."
        )
    top = largest_strength(model, data, loss)
    return top * np.logspace(0.0, np.log10(ratio), n)


class RegularisationPath(NamedTuple):
    """A trained regularisation path.

    Fields: `strengths` (NumPy, `(N,)`), the penalty exponent `p`, the trained
    `ensemble` (unfinalised, member axis first), its `history`, `active`
    (boolean `(N, n_terms)`: which terms survive in each member) and `loss`
    (`(N,)`, the data loss without the penalty).
    """

    strengths: np.ndarray
    p: float
    ensemble: Any
    history: History | None
    active: np.ndarray
    loss: np.ndarray

    def member(self, i: int) -> Any:
        """The finalised model of member `i`."""
        return finalize(ensemble_member(self.ensemble, i))


def regularisation_path(
    model: Any,
    data: PyTree,
    strengths: int | Sequence[float] | ArrayLike = 16,
    *,
    loss: Loss = stress_loss,
    p: float = 1.0,
    steps: int = 5000,
    learning_rate: float = 1e-2,
    batch_size: int | None = None,
    ratio: float = 1e-4,
    log_every: int = 100,
    verbose: int = 0,
    key: PRNGKeyArray,
) -> RegularisationPath:
    """Train one sparse model per penalty strength, all in one compiled ensemble fit.

    Every member starts from `model` and carries its own strength in its
    [`SparseWeights`][klax.mechanics.SparseWeights]; they are trained together
    by [`klax.fit_ensemble`][] with
    [`sparse_adam`][klax.mechanics.sparse_adam] (one compilation, one loop),
    minimising `loss + λ Σ a^p`.

    **Arguments:**

    - `model`: the unfinalised starting model, e.g. `CANN(..., sparse=True)`.
    - `data`: the training data, a pytree of arrays with a leading point axis
      (e.g. a [`StressData`][klax.mechanics.StressData]).
    - `strengths`: an int `N` (default 16) for `N` strengths log-spaced from
      [`largest_strength`][klax.mechanics.largest_strength] down by `ratio`, or
      explicit non-negative strengths (0: unregularised).
    - `loss`: a [`klax.Loss`][] of the model and a batch of `data`.
    - `p`: penalty exponent in `(0, 1]`.
    - `steps`, `learning_rate`: optimizer steps and Adam step size.
    - `batch_size`: default the whole data set (deterministic full batches).
    - `ratio`: smallest over largest strength when `strengths` is an int.
    - `log_every`, `verbose`: as for `klax.fit_ensemble`.
    - `key`: a JAX random key (batch order). (Keyword only argument.)

    **Returns:** a [`RegularisationPath`][klax.mechanics.RegularisationPath].
    """
    p = _check_p(p, "regularisation_path")
    data = _as_jax(data)
    _sparse_node(model)
    if isinstance(strengths, int) and not isinstance(strengths, bool):
        values = path_strengths(model, data, strengths, ratio, loss)
    else:
        values = np.asarray(strengths, dtype=np.float64).reshape(-1)
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                "`regularisation_path(strengths=...)` must be a positive int or a "
                f"non-empty sequence of finite numbers >= 0; got {strengths!r}."
            )
    n_points = _leading_size(data)
    dtype = _sparse_node(model).parameter.dtype
    ensemble = eqx.filter_vmap(lambda s: with_strength(model, s))(
        jnp.asarray(values, dtype)
    )
    ensemble, history = fit_ensemble(
        ensemble,
        data,
        batch_size=n_points if batch_size is None else batch_size,
        steps=steps,
        loss=loss,
        optimizer=sparse_adam(learning_rate, p),
        log_every=log_every,
        verbose=verbose,
        key=key,
    )
    member_loss = eqx.filter_jit(eqx.filter_vmap(lambda m: loss(m, data, None)))
    final = apply(ensemble)
    return RegularisationPath(
        strengths=values,
        p=p,
        ensemble=final,
        history=history,
        active=active_terms(final),
        loss=np.asarray(member_loss(final), dtype=np.float64),
    )


def term_label(term: CANNTerm, invariants: str = "polyconvex") -> str:
    """A short label of a term, e.g. `"exp (Ĩ2 − 3^(3/2))²"`."""
    x = _symbol(term.invariant, invariants)
    power = "²" if term.power == 2 else ""
    return f"{term.activation} {x}{power}"


def path_table(
    path: RegularisationPath,
    data: Any,
    train_cases: Sequence[str],
    test_cases: Sequence[str] = (),
    models: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per strength: active terms and R² per curve (training and held out).

    `data` are the measurements (a [`Measurements`][klax.mechanics.Measurements]
    or a dict of load curves), `train_cases` and `test_cases` selections of
    them (see [`stress_data`][klax.mechanics.stress_data]). `models` (default:
    the path's members) are the models to evaluate, one per strength, e.g.
    the members after [`polish`][klax.mechanics.polish]. Each row is a dict
    with `strength`, `active` (the number of surviving terms), `terms` (their
    labels), `loss` (training loss without penalty of the trained member),
    `r2` (curve name → R², as [`curve_r2`][klax.mechanics.curve_r2]) and
    `split` (curve name → `"train"`/`"test"`).
    """
    if models is not None and len(models) != len(path.strengths):
        raise ValueError(
            f"`path_table(models=...)` needs one model per strength "
            f"({len(path.strengths)}); got {len(models)}."
        )
    rows = []
    terms = path.ensemble.terms
    invariants = getattr(path.ensemble, "invariants", "polyconvex")
    for i, strength in enumerate(path.strengths):
        member = path.member(i) if models is None else finalize(models[i])
        r2_train = curve_r2(member, data, list(train_cases))
        r2_test = curve_r2(member, data, list(test_cases)) if test_cases else {}
        mask = active_terms(member)
        rows.append(
            dict(
                strength=float(strength),
                active=int(mask.sum()),
                terms=[
                    term_label(t, invariants)
                    for t, m in zip(terms, mask, strict=True)
                    if m
                ],
                loss=float(path.loss[i]),
                r2={**r2_train, **r2_test},
                split={
                    **{c: "train" for c in r2_train},
                    **{c: "test" for c in r2_test},
                },
            )
        )
    return rows


def format_path_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The path table as fixed-width text (strength, active terms, R² per case)."""
    if not rows:
        return ""
    cases = list(rows[0]["r2"])
    head = f"{'strength':>10}  {'active':>6}  " + "  ".join(
        f"{(c + ' (' + rows[0]['split'][c] + ')'):>22}" for c in cases
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['strength']:>10.3e}  {r['active']:>6d}  "
            + "  ".join(f"{r['r2'][c]:>22.5f}" for c in cases)
        )
    return "\n".join(lines)


def select_member(
    rows: Sequence[Mapping[str, Any]],
    tolerance: float = 0.002,
    cases: Sequence[str] | None = None,
) -> int:
    """The selection rule: the sparsest member that is nearly as good as the best.

    For every evaluated curve (training and held out, or only `cases`), take
    the best R² that any member of the path reaches on it. A member is
    eligible when its R² on every curve is within `tolerance` of that best
    and finite. Among the eligible members the one with the fewest active
    terms is selected; ties go to the higher worst-curve R². If no member is
    eligible, the one with the highest worst-curve R² is returned.

    **Returns:** the index of the selected row.
    """
    if not rows:
        raise ValueError("`select_member`: the path table is empty.")
    if not (tolerance >= 0 and np.isfinite(tolerance)):
        raise ValueError(
            f"`select_member(tolerance=...)` must be a number >= 0; got {tolerance!r}."
        )
    cases = list(rows[0]["r2"]) if cases is None else list(cases)
    r2 = np.array([[r["r2"][c] for c in cases] for r in rows], dtype=np.float64)
    r2 = np.where(np.isfinite(r2), r2, -np.inf)
    best = r2.max(axis=0)
    eligible = np.all(r2 >= best - tolerance, axis=1)
    eligible &= np.array([r["active"] > 0 for r in rows])
    if not eligible.any():  # nobody is close to the best everywhere
        return int(np.argmax(r2.min(axis=1)))
    candidates = np.flatnonzero(eligible)
    order = sorted(
        (int(i) for i in candidates), key=lambda i: (rows[i]["active"], -r2[i].min())
    )
    return int(order[0])


# ---------------------------------------------------------------------------
# Least-squares polish of the surviving terms


def _upper_bounds(model: Any) -> np.ndarray:
    return np.array(
        [
            0.0
            if t.activation == "identity"
            else (1.0 / model.log_limit**t.power if t.activation == "log" else np.inf)
            for t in model.terms
        ]
    )


def _term_sizes(model: Any) -> np.ndarray:
    """Energy of each term at the edge of the data (scaled input 1), in units of `E`."""
    a = np.asarray(model.weights, np.float64)
    w = np.asarray(model.inner, np.float64)
    size = np.empty_like(a)
    for k, t in enumerate(model.terms):
        if t.activation == "identity":
            size[k] = a[k]
        elif t.activation == "exp":
            size[k] = a[k] * np.expm1(w[k])
        else:
            size[k] = -a[k] * np.log1p(-w[k])
    return np.abs(size)


@eqx.filter_jit
def _least_squares(final, mask, upper, data, residuals, max_steps):
    w0 = final.inner

    def build(theta):
        a, w = theta
        return eqx.tree_at(
            lambda m: (m.weights, m.inner),
            final,
            (jnp.where(mask, a, 0.0), jnp.where(mask, w, w0)),
        )

    solution = optx.least_squares(
        lambda theta, args: residuals(build(theta), args),
        optx.LevenbergMarquardt(rtol=1e-12, atol=1e-14),
        (final.weights, final.inner),
        args=data,
        max_steps=max_steps,
        throw=False,
    )
    a, w = solution.value
    # Back into the admissible set: a >= 0, inner weights inside their domain.
    return build((jnp.maximum(a, 0.0), jnp.clip(w, 0.0, upper)))


def polish(
    model: Any,
    data: PyTree,
    residuals: Callable[[Any, PyTree], Array] = stress_residuals,
    max_steps: int = 256,
    prune_rtol: float = 1e-9,
) -> Any:
    """Refine the surviving terms of a CANN by nonlinear least squares.

    The outer and inner weights of the active terms (pruned terms stay
    exactly zero) are refined by Levenberg–Marquardt (`optimistix`) on
    `residuals(model, data)`, the unpenalised data misfit: the penalty that
    selected the terms also shrinks their coefficients (the lasso bias), and
    this removes it (a "relaxed lasso", Meinshausen 2007). The solution is
    projected onto the admissible set (non-negative weights, `log` terms
    inside their domain). A term whose energy at the edge of the data falls
    below `prune_rtol` times the total is then set exactly to zero and the
    rest refined once more. The result is kept if its squared residual sum
    is not higher than before, otherwise `model` is kept (finalised); either
    way, terms below `prune_rtol` are removed from what is returned.

    **Arguments:**

    - `model`: a CANN (finalised or not).
    - `data`: the training data.
    - `residuals`: the residual vector of a finalised model on `data`
      (default: `klax.mechanics.residuals`, the weighted stress residuals of
      a [`StressData`][klax.mechanics.StressData]).
    - `max_steps`: iteration limit of the solver.
    - `prune_rtol`: relative size below which a refined term is removed.

    **Returns:** the finalised, refined model.
    """
    final = finalize(model)
    if not isinstance(final, (CANN, CompressibleCANN)):
        raise TypeError(f"`polish` expects a CANN; got {type(final).__name__}.")
    data = _as_jax(data)
    upper = jnp.asarray(_upper_bounds(final), jnp.asarray(final.inner).dtype)
    mask = active_terms(final)
    candidate = final
    for _ in range(2):
        candidate = _least_squares(
            candidate, jnp.asarray(mask), upper, data, residuals, max_steps
        )
        sizes = _term_sizes(candidate)
        small = mask & (sizes <= prune_rtol * sizes.sum())
        if not small.any():
            break
        mask = mask & ~small
        candidate = eqx.tree_at(
            lambda m: m.weights,
            candidate,
            jnp.where(jnp.asarray(mask), jnp.asarray(candidate.weights), 0.0),
        )
    before = float(jnp.sum(residuals(final, data) ** 2))
    after = float(jnp.sum(residuals(candidate, data) ** 2))
    if not (np.isfinite(after) and after <= before):
        candidate = final
    sizes = _term_sizes(candidate)
    keep = jnp.asarray(sizes > prune_rtol * sizes.sum())
    return eqx.tree_at(
        lambda m: m.weights,
        candidate,
        jnp.where(keep, jnp.asarray(candidate.weights), 0.0),
    )


# ---------------------------------------------------------------------------
# The discovered law: formula, JSON, parser


def _symbol(invariant: str, invariants: str) -> str:
    if invariant == "I4":
        return "⟨I4 − 1⟩"
    if invariants == "isochoric":
        return {"I1": "(Ī1 − 3)", "I2": "(Ī2 − 3)"}[invariant]
    return {"I1": "(Ĩ1 − 3)", "I2": "(Ĩ2 − 3^(3/2))"}[invariant]


class LawTerm(NamedTuple):
    """One term of a discovered law: `coefficient · f(inner · x^power)` with
    `x` the shifted `invariant`; `coefficient` in the law's units, `inner`
    dimensionless (`None` for the identity)."""

    invariant: str
    power: int
    activation: str
    coefficient: float
    inner: float | None


class DiscoveredLaw(eqx.Module):
    """A discovered strain-energy law with explicit coefficients; a potential `F -> W`.

    `W = Σ_k c_k f_k(w_k x_k^(p_k)) [+ c_J (J − 1)²]` with the shifted
    invariants `x` of `invariants` (`"polyconvex"`: `Ĩ1 − 3`, `Ĩ2 − 3^(3/2)`;
    `"isochoric"`: `Ī1 − 3`, `Ī2 − 3`; and `⟨I4 − tr G⟩`). Build it from a
    trained CANN with [`discovered_law`][klax.mechanics.discovered_law], from
    its text with [`parse_formula`][klax.mechanics.parse_formula] or from JSON
    with [`law_from_json`][klax.mechanics.law_from_json]. Evaluating it uses
    only the formula (no network code), so it is an independent check of the
    model it came from.
    """

    terms: tuple[LawTerm, ...] = eqx.field(static=True)
    invariants: str = eqx.field(static=True)
    volumetric: float | None = eqx.field(static=True)
    units: str = eqx.field(static=True)
    structural_tensor: Array | None

    def __call__(self, F: ArrayLike) -> Array:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "DiscoveredLaw")
        cof = _cofactor(F)
        J = check_positive_jacobian(_det(F), "DiscoveredLaw")
        if self.invariants == "isochoric":
            I1 = jnp.sum(F * F) * J ** (-2.0 / 3.0)
            I2 = jnp.sum(cof * cof) * J ** (-4.0 / 3.0)
            x = {"I1": I1 - 3.0, "I2": I2 - 3.0}
        else:
            I1 = jnp.sum(F * F) * J ** (-2.0 / 3.0)
            I2 = jnp.sqrt(jnp.sum(cof * cof)) ** 3 / J**2
            x = {"I1": I1 - 3.0, "I2": I2 - REFERENCE_I2_POLYCONVEX}
        if self.structural_tensor is not None:
            G = jnp.asarray(self.structural_tensor)
            y = jnp.sum((F @ G) * F) - jnp.trace(G)
            x["I4"] = jnp.where(y > 0, y, 0.0)
        energy = jnp.zeros((), F.dtype)
        for t in self.terms:
            if t.invariant not in x:
                raise ValueError(
                    "`DiscoveredLaw`: an I4 term needs the structural tensor; pass "
                    "structural_tensor= to parse_formula/law_from_json."
                )
            u = x[t.invariant] ** t.power
            inner = 0.0 if t.inner is None else t.inner
            if t.activation == "identity":
                f = u
            elif t.activation == "exp":
                f = jnp.expm1(inner * u)
            else:
                f = -jnp.log1p(-inner * u)
            energy = energy + t.coefficient * f
        if self.volumetric is not None:
            energy = energy + self.volumetric * (J - 1.0) ** 2
        return energy

    def formula(self, digits: int = 10) -> str:
        """The law as text, e.g. `W = 0.13 MPa·(Ī1 − 3) + 0.4 MPa·(Ī2 − 3)²`.

        `digits` significant digits per number (the default reproduces the
        stresses to about 1e-9 relative when parsed back).
        """
        if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
            raise ValueError(
                f"`formula(digits=...)` must be a positive int; got {digits!r}."
            )
        parts = []
        for t in self.terms:
            x = _symbol(t.invariant, self.invariants) + ("²" if t.power == 2 else "")
            if t.activation == "identity":
                body = x
            elif t.activation == "exp":
                body = f"[exp({t.inner:.{digits}g} {x}) − 1]"
            else:
                body = f"[−ln(1 − {t.inner:.{digits}g} {x})]"
            parts.append(f"{t.coefficient:.{digits}g} {self.units}·{body}")
        if self.volumetric is not None:
            parts.append(f"{self.volumetric:.{digits}g} {self.units}·(J − 1)²")
        return "W = " + (" + ".join(parts) if parts else "0")

    def to_json(self) -> dict[str, Any]:
        """The law as a JSON-serialisable dict (exact coefficients, and the formula)."""
        G = self.structural_tensor
        return {
            "format": LAW_FORMAT,
            "units": self.units,
            "invariants": self.invariants,
            "terms": [t._asdict() for t in self.terms],
            "volumetric": self.volumetric,
            "structural_tensor": None if G is None else np.asarray(G).tolist(),
            "formula": self.formula(),
        }


def discovered_law(model: Any, units: str = "MPa") -> DiscoveredLaw:
    """The law of a trained CANN: its active terms with physical coefficients.

    A model term `E a f(w (X/s)^p)` (shifted invariant `X`, scale `s`, energy
    scale `E`) becomes `c f(K X^p)` with `c = E a`, `K = w / s^p`; an identity
    term `E a (X/s)^p` becomes `(E a / s^p) X^p`. Pruned terms are left out.

    Example:
        >>> import jax, klax
        >>> from klax.mechanics import CANN, CANNTerm, discovered_law
        >>> model = klax.finalize(CANN([CANNTerm("I1", 1, "identity")],
        ...                            input_scale=2.0, key=jax.random.key(0)))
        >>> model.weights
        Array([1.3423141], dtype=float32)
        >>> discovered_law(model).formula(digits=3)  # 1.34 / 2
        'W = 0.671 MPa·(Ī1 − 3)'
    """
    final = finalize(model)
    if not isinstance(final, (CANN, CompressibleCANN)):
        raise TypeError(f"`discovered_law` expects a CANN; got {type(final).__name__}.")
    names = ("I1", "I2", "I4")
    scale: dict[str, float] = dict(zip(names, final.input_scale, strict=False))
    mask = active_terms(final)
    a = np.asarray(final.weights, dtype=np.float64)
    w = np.asarray(final.inner, dtype=np.float64)
    terms = []
    for k, t in enumerate(final.terms):
        if not mask[k]:
            continue
        s = scale[t.invariant] ** t.power
        if t.activation == "identity":
            coefficient, inner = final.energy_scale * a[k] / s, None
        else:
            coefficient, inner = final.energy_scale * a[k], float(w[k] / s)
        terms.append(
            LawTerm(t.invariant, t.power, t.activation, float(coefficient), inner)
        )
    if isinstance(final, CANN):
        return DiscoveredLaw(tuple(terms), final.invariants, None, units, None)
    G = final.structural_tensor
    return DiscoveredLaw(
        tuple(terms),
        "polyconvex",
        0.5 * float(np.asarray(final.bulk_modulus)),
        units,
        None if G is None else jnp.asarray(G),
    )


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_X = (
    r"(?:\((?P<inv>Ĩ1|Ĩ2|Ī1|Ī2) [−-] (?P<ref>3\^\(3/2\)|3)\)|⟨(?P<i4>I4) [−-] 1⟩)"
    r"(?P<sq>²)?"
)
_TERM = re.compile(rf"^(?P<c>{_NUM}) (?P<unit>[^\s·]+)·(?P<body>.+)$")
_BODIES = (
    ("vol", re.compile(r"^\(J [−-] 1\)²$")),
    ("exp", re.compile(rf"^\[exp\((?P<k>{_NUM})[ ·]{_X}\) [−-] 1\]$")),
    ("log", re.compile(rf"^\[[−-]ln\(1 [−-] (?P<k>{_NUM})[ ·]{_X}\)\]$")),
    ("identity", re.compile(rf"^{_X}$")),
)
_REFS = {"Ĩ1": "3", "Ĩ2": "3^(3/2)", "Ī1": "3", "Ī2": "3"}


def parse_formula(
    text: str, structural_tensor: ArrayLike | None = None
) -> DiscoveredLaw:
    """Read a law printed by `DiscoveredLaw.formula` back into a `DiscoveredLaw`.

    **Arguments:**

    - `text`: e.g. `"W = 0.134 MPa·(Ī1 − 3) + 0.0021 MPa·[exp(0.24 (Ī2 − 3)²) − 1]"`
      (ASCII `-` is accepted for `−`).
    - `structural_tensor`: `G` for laws with `⟨I4 − 1⟩` terms.

    **Returns:** the [`DiscoveredLaw`][klax.mechanics.DiscoveredLaw].

    Raises a `ValueError` naming the first term it cannot read.
    """
    if not isinstance(text, str):
        raise TypeError(f"`parse_formula` expects a string; got {type(text).__name__}.")
    body = text.strip()
    if not body.startswith("W ="):
        raise ValueError(
            f"`parse_formula`: a law starts with 'W = '; got {text[:20]!r}."
        )
    body = body[3:].strip()
    terms: list[LawTerm] = []
    volumetric = None
    units: set[str] = set()
    kinds: set[str] = set()
    for item in [] if body == "0" else body.split(" + "):
        match = _TERM.match(item.strip())
        kind, groups = "", {}
        if match is not None:
            for name, pattern in _BODIES:
                body_match = pattern.match(match["body"])
                if body_match is not None:
                    kind = name
                    groups = {
                        k: v for k, v in body_match.groupdict().items() if v is not None
                    }
                    break
        if match is None or not kind:
            raise ValueError(f"`parse_formula`: cannot read the term {item.strip()!r}.")
        units.add(match["unit"])
        coefficient = float(match["c"])
        if kind == "vol":
            volumetric = coefficient
            continue
        inv = groups.get("inv") or groups.get("i4") or ""
        if inv != "I4":
            if groups.get("ref") != _REFS[inv]:
                raise ValueError(
                    f"`parse_formula`: {inv} must be shifted by {_REFS[inv]} in "
                    f"{item.strip()!r}."
                )
            kinds.add("isochoric" if inv.startswith("Ī") else "polyconvex")
            inv = "I" + inv[-1]
        power = 2 if "sq" in groups else 1
        inner = float(groups["k"]) if kind != "identity" else None
        terms.append(LawTerm(inv, power, kind, coefficient, inner))
    if len(units) > 1:
        raise ValueError(f"`parse_formula`: mixed units {sorted(units)} in one law.")
    if len(kinds) > 1:
        raise ValueError("`parse_formula`: a law mixes Ĩ and Ī invariants.")
    if volumetric is not None and kinds == {"isochoric"}:
        raise ValueError("`parse_formula`: compressible laws use the Ĩ invariants.")
    needs_G = any(t.invariant == "I4" for t in terms)
    if needs_G and structural_tensor is None:
        raise ValueError(
            "`parse_formula`: the law has ⟨I4 − 1⟩ terms; pass structural_tensor=."
        )
    return DiscoveredLaw(
        tuple(terms),
        kinds.pop() if kinds else "polyconvex",
        volumetric,
        units.pop() if units else "MPa",
        None if structural_tensor is None else jnp.asarray(structural_tensor),
    )


def law_from_json(data: Mapping[str, Any] | str) -> DiscoveredLaw:
    """Rebuild a [`DiscoveredLaw`][klax.mechanics.DiscoveredLaw] from `to_json()` output
    (a dict, or its JSON text)."""
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, Mapping) or data.get("format") != LAW_FORMAT:
        raise ValueError(
            f"`law_from_json`: expected a dict with format {LAW_FORMAT!r}; got "
            f"{(data.get('format') if isinstance(data, Mapping) else data)!r}."
        )
    terms = tuple(
        LawTerm(
            t["invariant"],
            int(t["power"]),
            t["activation"],
            float(t["coefficient"]),
            None if t["inner"] is None else float(t["inner"]),
        )
        for t in data["terms"]
    )
    G = data.get("structural_tensor")
    vol = data.get("volumetric")
    return DiscoveredLaw(
        terms,
        data["invariants"],
        None if vol is None else float(vol),
        data["units"],
        None if G is None else jnp.asarray(G),
    )


# ---------------------------------------------------------------------------
# The whole pipeline (used by `klax-calibrate --model cann`)


class Discovery(NamedTuple):
    """Result of [`discover_law`][klax.mechanics.discover_law]: the trained
    `path`, the polished `models` (one per strength), the table `rows`, the
    `selected` index, its `law`, and its loss `history` (a `klax.History`)."""

    path: RegularisationPath
    models: list[Any]
    rows: list[dict[str, Any]]
    selected: int
    law: DiscoveredLaw
    history: History


def discover_law(
    data: Any,
    train_cases: Sequence[str],
    test_cases: Sequence[str] = (),
    *,
    config: Mapping[str, Any] | None = None,
    strengths: int = 16,
    p: float = 1.0,
    steps: int = 5000,
    learning_rate: float = 1e-2,
    tolerance: float = 0.002,
    include_unregularised: bool = True,
    units: str = "MPa",
    log_every: int = 100,
    verbose: int = 0,
    key: PRNGKeyArray,
) -> Discovery:
    """Automated model discovery on load curves, end to end.

    `data`: [`Measurements`][klax.mechanics.Measurements] or a dict of load
    curves; `train_cases`, `test_cases`: selections of them (see
    [`stress_data`][klax.mechanics.stress_data]). Builds a
    [`CANN`][klax.mechanics.CANN] (from `config` as for
    [`build_model`][klax.mechanics.build_model], `model: "cann"`; missing
    scales are taken from the training data), trains the regularisation path
    (`strengths` log-spaced strengths, plus strength 0 if
    `include_unregularised`), polishes every member
    ([`polish`][klax.mechanics.polish]), tabulates R² per curve
    ([`path_table`][klax.mechanics.path_table]) and applies the selection
    rule ([`select_member`][klax.mechanics.select_member] with `tolerance`).
    """
    from ._calibration import build_model, invariant_scales, stress_data

    config = dict(config or {"model": "cann"})
    invariants = config.setdefault("invariants", "isochoric")
    config.setdefault(
        "input_scale", list(invariant_scales(data, train_cases, invariants))
    )
    config.setdefault("energy_scale", data_energy_scale(data, train_cases))
    init_key, train_key = jr.split(key)
    model = build_model(config, key=init_key)
    measured = data
    data = stress_data(measured, train_cases)
    values = path_strengths(model, data, strengths)
    if include_unregularised:
        values = np.append(values, 0.0)
    path = regularisation_path(
        model,
        data,
        values,
        p=p,
        steps=steps,
        learning_rate=learning_rate,
        log_every=log_every,
        verbose=verbose,
        key=train_key,
    )
    models = [polish(path.member(i), data) for i in range(len(values))]
    rows = path_table(path, measured, train_cases, test_cases, models=models)
    selected = select_member(rows, tolerance)
    law = discovered_law(models[selected], units)
    steps_logged, logged = (
        path.history["loss"] if path.history is not None else ([], [])
    )
    history = History(
        content={
            "loss": (
                list(steps_logged),
                [float(np.asarray(v)[selected]) for v in logged],
            )
        }
    )
    return Discovery(path, models, rows, selected, law, history)


def write_discovery(
    directory: Any, discovery: Discovery, plot: bool = True
) -> list[str]:
    """Write `path.csv` (the table), `law.txt` (the formula), `law.json` and,
    with `plot` and matplotlib installed, `pareto.png` (active terms against
    the worst training and held-out `1 − R²`).

    **Returns:** the names of the written files.
    """
    import csv
    import pathlib

    directory = pathlib.Path(directory)
    rows = discovery.rows
    cases = list(rows[0]["r2"]) if rows else []
    with (directory / "path.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["strength", "active_terms", "selected", "training_loss"]
            + [f"r2_{c}_{rows[0]['split'][c]}" for c in cases]
            + ["terms"]
        )
        for i, r in enumerate(rows):
            writer.writerow(
                [repr(r["strength"]), r["active"], int(i == discovery.selected)]
                + [repr(r["loss"])]
                + [repr(r["r2"][c]) for c in cases]
                + ["; ".join(r["terms"])]
            )
    (directory / "law.txt").write_text(discovery.law.formula() + "\n")
    (directory / "law.json").write_text(
        json.dumps(discovery.law.to_json(), indent=2, ensure_ascii=False) + "\n"
    )
    written = ["path.csv", "law.txt", "law.json"]
    if plot and _pareto_plot(directory / "pareto.png", discovery):
        written.append("pareto.png")
    return written


def _pareto_plot(path: Any, discovery: Discovery) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        return False
    rows = discovery.rows
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.subplots()
    active = np.array([r["active"] for r in rows])
    for split, marker in (("train", "x"), ("test", "o")):
        names = [c for c in rows[0]["r2"] if rows[0]["split"][c] == split]
        if not names:
            continue
        worst = np.array([min(r["r2"][c] for c in names) for r in rows])
        ax.semilogy(active, np.maximum(1.0 - worst, 1e-16), marker, label=split)
    chosen = rows[discovery.selected]
    worst_all = min(chosen["r2"].values())
    ax.semilogy(
        [chosen["active"]], [max(1.0 - worst_all, 1e-16)], "r*", ms=12, label="selected"
    )
    ax.set(xlabel="active terms", ylabel="1 − worst R²", title="Pareto front")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)
    return True
