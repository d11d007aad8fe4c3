"""Constitutive artificial neural networks (CANNs) and sparse training.

After Linka & Kuhl (2023, "A new family of constitutive artificial neural
networks towards automated model discovery"): the strain-energy density is a
weighted sum of classical terms,

$$W = E \\sum_k a_k\\, f_k\\!\\left(w_k\\, x_k^{p_k}\\right),\\qquad
x = \\frac{\\tilde I - \\tilde I^0}{s},$$

one per combination of an invariant (shifted so that it vanishes at `F = I`,
divided by a positive scale `s`), a power `p ∈ {1, 2}` and an activation
`f`: the identity, `exp(·) − 1` or `−ln(1 − ·)`. The outer weights `a_k ≥ 0`
are made sparse by [`sparse_adam`][klax.mechanics.sparse_adam], so that a
law of a few terms remains.

**Polyconvexity by construction.** The shifted invariants are polyconvex
and non-negative on every admissible state (`Ĩ1 ≥ 3`, `Ĩ2 ≥ 3^(3/2)`,
`Ī2 ≥ 3`; the anisotropic `I4` enters through the Macaulay bracket
`⟨I4 − 1⟩ = max(I4 − 1, 0)`, a convex non-decreasing function of the convex
`I4`). `x ↦ x²` is convex and non-decreasing on `x ≥ 0`; the identity,
`exp(w u) − 1` (`w ≥ 0`) and `−ln(1 − w u)` (`w ≥ 0`, `w u < 1`) are convex
and non-decreasing; non-negative outer weights keep the sum so. A convex
non-decreasing function of polyconvex invariants is polyconvex. Every term is
zero at `F = I`, so the energy is; the incompressible reference stress is a
pure pressure, and the isochoric invariants have zero derivative at `F = I`,
so the compressible stress vanishes there too.

**The domain of the logarithm.** `−ln(1 − w u)` is finite only for
`w u < 1`: it is a limiting-extensibility (Gent-type) term that locks at
`u = 1/w`. Its inner weight is kept in `[0, 1/log_limit^p]`, so every
logarithmic term stays finite for scaled inputs `x < log_limit` (default
1.25: 25 % beyond the training range when `s` is the data range, see
[`invariant_scales`][klax.mechanics.invariant_scales]). Beyond the locking
point the energy is not a number (NaN), loudly.
"""

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._misc import check_real, check_scales, default_floating_dtype, describe, invalid
from .._wrappers import Constraint, NonNegative, NonTrainable, check_finalized
from ._baselines import AbstractIsotropicPotential
from ._kinematics import (
    REFERENCE_I2_POLYCONVEX,
    _cofactor,
    _det,
    as_deformation_gradient,
    check_positive_jacobian,
    check_structural_tensor,
)

Scalar = Float[Array, ""]
ACTIVATIONS = ("identity", "exp", "log")
"""Names of the CANN activations: `u`, `exp(w u) − 1` and `−ln(1 − w u)`."""
ISOTROPIC_INVARIANTS = ("I1", "I2")
Invariants = Literal["polyconvex", "isochoric"]


class CANNTerm(NamedTuple):
    """One term of a CANN library: `invariant` (`"I1"`, `"I2"` or `"I4"`),
    `power` (1 or 2) and `activation` (`"identity"`, `"exp"` or `"log"`)."""

    invariant: str
    power: int
    activation: str


def cann_terms(
    invariants: Sequence[str] = ISOTROPIC_INVARIANTS,
    powers: Sequence[int] = (1, 2),
    activations: Sequence[str] = ACTIVATIONS,
) -> tuple[CANNTerm, ...]:
    """The term library: every combination of invariant, power and activation.

    The default is the isotropic library of Linka & Kuhl (2023): two
    invariants, two powers, three activations, 12 terms, ordered by
    invariant, then power, then activation.

    **Arguments:**

    - `invariants`: any of `"I1"`, `"I2"` (the isochoric invariants of the
      model, `Ĩ` or `Ī`) and `"I4"` (anisotropic, needs a structural tensor,
      [`CompressibleCANN`][klax.mechanics.CompressibleCANN] only).
    - `powers`: any of 1, 2.
    - `activations`: any of `"identity"`, `"exp"`, `"log"`.

    **Returns:** a tuple of [`CANNTerm`][klax.mechanics.CANNTerm].

    Example:
        >>> from klax.mechanics import cann_terms
        >>> len(cann_terms()), cann_terms()[0]
        (12, CANNTerm(invariant='I1', power=1, activation='identity'))
    """
    terms = tuple(
        CANNTerm(str(i), int(p), str(a))
        for i in invariants
        for p in powers
        for a in activations
    )
    return _check_terms(terms, ("I1", "I2", "I4"), "cann_terms")


def _check_terms(
    terms: Any, allowed: Sequence[str], owner: str
) -> tuple[CANNTerm, ...]:
    try:
        terms = tuple(CANNTerm(*t) for t in terms)
    except TypeError:
        raise TypeError(
            f"`{owner}(terms=...)` must be a sequence of (invariant, power, "
            f"activation) triples, e.g. cann_terms(); got {terms!r}."
        ) from None
    if not terms:
        raise ValueError(f"`{owner}(terms=...)` needs at least one term.")
    for t in terms:
        if t.invariant not in allowed:
            raise ValueError(
                f"`{owner}`: unknown invariant {t.invariant!r} in term {tuple(t)}; "
                f"expected one of {', '.join(allowed)}."
            )
        if isinstance(t.power, bool) or t.power not in (1, 2):
            raise ValueError(
                f"`{owner}`: power must be 1 or 2; got {t.power!r} in term {tuple(t)}."
            )
        if t.activation not in ACTIVATIONS:
            raise ValueError(
                f"`{owner}`: unknown activation {t.activation!r} in term "
                f"{tuple(t)}; expected one of {', '.join(ACTIVATIONS)}."
            )
    if len(set(terms)) != len(terms):
        raise ValueError(f"`{owner}(terms=...)` lists a term twice: {terms!r}.")
    return terms


def _scales(scale: Any, names: Sequence[str], owner: str) -> tuple[float, ...]:
    hint = f"One per invariant: {', '.join(names)}."
    return check_scales(scale, len(names), f"`{owner}(input_scale=...)`", hint)


# ---------------------------------------------------------------------------
# Constrained parameters


class SparseWeights(Constraint):
    """Non-negative weights made sparse by [`sparse_adam`][klax.mechanics.sparse_adam].

    `parameter` holds the weights, `strength` (a scalar array) the strength
    `λ ≥ 0` of their sparsity penalty. The loss never sees `strength`
    (`unwrap` returns the weights only), so training leaves it unchanged, and
    each member of an ensemble may carry its own: one compiled program trains
    a whole regularisation path. `apply` clamps the weights at zero, so with
    any other optimizer the wrapper acts like [`klax.NonNegative`][].

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> from klax.mechanics import SparseWeights
        >>> klax.finalize(SparseWeights(jnp.array([-1.0, 2.0]), jnp.array(0.1)))
        Array([0., 2.], dtype=float32)
    """

    parameter: Array
    strength: Array

    def unwrap(self) -> Array:
        return self.parameter

    def apply(self) -> "SparseWeights":
        return eqx.tree_at(
            lambda s: s.parameter, self, jnp.maximum(self.parameter, 0.0)
        )


class BoundedWeights(Constraint):
    """Weights clamped into `[0, upper]` after each update (static `upper`)."""

    parameter: Array
    upper: tuple[float, ...] = eqx.field(static=True)

    def unwrap(self) -> Array:
        return self.parameter

    def apply(self) -> "BoundedWeights":
        upper = jnp.broadcast_to(
            jnp.asarray(self.upper, self.parameter.dtype), self.parameter.shape
        )
        clipped = jnp.clip(self.parameter, 0.0, upper)
        return eqx.tree_at(lambda s: s.parameter, self, clipped)


def with_strength(model: PyTree, strength: ArrayLike) -> PyTree:
    """A copy of `model` with the penalty strength of its `SparseWeights` set.

    Works under `jax.vmap` (build a path ensemble with
    `jax.vmap(lambda s: with_strength(model, s))(strengths)`).
    """

    def is_sparse(x):
        return isinstance(x, SparseWeights)

    nodes = [x for x in jax.tree.leaves(model, is_leaf=is_sparse) if is_sparse(x)]
    if not nodes:
        raise ValueError(
            "`with_strength`: the model holds no SparseWeights; build it with "
            "sparse=True (e.g. CANN(..., sparse=True))."
        )

    def put(node):
        if is_sparse(node):
            value = jnp.asarray(strength, node.parameter.dtype)
            return eqx.tree_at(lambda s: s.strength, node, value)
        return node

    return jax.tree.map(put, model, is_leaf=is_sparse)


# ---------------------------------------------------------------------------
# Proximal operators and the sparse optimizer


def prox_lp(z: ArrayLike, t: ArrayLike, p: float = 1.0) -> Array:
    """Proximal operator of `t·|x|^p` restricted to `x ≥ 0`, element-wise.

    Returns `argmin_{x ≥ 0} ½ (x − z)² + t x^p` for `t ≥ 0`:

    - `p = 1`: soft thresholding `max(z − t, 0)`;
    - `0 < p < 1`: the penalty is not convex, but the minimiser is still
      explicit up to a scalar root: it is `0` unless `z` exceeds the
      threshold `z_τ = x_τ + t p x_τ^(p−1)` with `x_τ = (2 t (1 − p))^(1/(2−p))`
      (where `½ (x − z)² + t x^p` has equal values at 0 and at its non-zero
      stationary point), and otherwise the larger root of
      `x + t p x^(p−1) = z`, found by Newton's method from `x = z` (which
      converges monotonically because the equation is convex in `x`).
      See e.g. Marjanovic & Solo (2012) for the thresholds of Lq penalties.

    Both produce exact zeros.

    **Arguments:**

    - `z`: the point to map (any shape).
    - `t`: the non-negative threshold, broadcastable to `z`.
    - `p`: exponent in `(0, 1]`.

    **Returns:** an array of the shape of `z`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import prox_lp
        >>> prox_lp(jnp.array([0.05, 0.5, -1.0]), 0.25)
        Array([0.  , 0.25, 0.  ], dtype=float32)
    """
    p = _check_p(p, "prox_lp")
    z = jnp.asarray(z)
    t = jnp.broadcast_to(jnp.asarray(t, z.dtype), z.shape)
    if p == 1.0:
        return jnp.maximum(z - t, 0.0)
    positive_t = t > 0
    t_safe = jnp.where(positive_t, t, 1.0)
    x_tau = (2.0 * t_safe * (1.0 - p)) ** (1.0 / (2.0 - p))
    z_tau = x_tau + t_safe * p * x_tau ** (p - 1.0)
    alive = z > z_tau
    x = jnp.where(alive, z, z_tau + 1.0)

    def newton(_, x):
        f = x + t_safe * p * x ** (p - 1.0) - z
        df = 1.0 + t_safe * p * (p - 1.0) * x ** (p - 2.0)
        return jnp.maximum(x - f / df, x_tau)

    x = jax.lax.fori_loop(0, 30, newton, x)
    return jnp.where(positive_t, jnp.where(alive, x, 0.0), jnp.maximum(z, 0.0))


def _check_p(p: Any, owner: str) -> float:
    name = f"`{owner}(p=...)`"
    value = check_real(p, name, positive=True)
    if value > 1.0:
        raise invalid(name, "in (0, 1]", describe(p))
    return value


class SparseAdamState(NamedTuple):
    """State of [`sparse_adam`][klax.mechanics.sparse_adam]: step `count` (int32
    scalar) and the first and second moments `mu`, `nu` (like the parameters)."""

    count: Array
    mu: PyTree
    nu: PyTree


def sparse_adam(
    learning_rate: optax.ScalarOrSchedule,
    p: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam with a proximal step for the sparsity penalty of `SparseWeights`.

    Every parameter takes an Adam step. The weights inside a
    [`SparseWeights`][klax.mechanics.SparseWeights] (strength `λ`) then take
    the proximal step of the penalty `λ Σ_k a_k^p` on `a ≥ 0`, in the metric
    of Adam's own preconditioner (proximal Adam, as in Yun, Lozano & Yang
    2021, "Adaptive proximal gradient methods for structured neural
    networks"): with the Adam step size `s_k = lr / (sqrt(v̂_k) + eps)` of
    weight `k`,

    $$a_k \\leftarrow \\operatorname{prox}_{\\lambda s_k |\\cdot|^p}
    \\bigl(a_k - s_k \\hat m_k\\bigr)$$

    ([`prox_lp`][klax.mechanics.prox_lp]). For `p = 1` this is soft
    thresholding: a weight becomes exactly zero, and a zero weight comes
    back only while the loss gradient is steeper than `−λ`, the optimality
    condition of `min loss + λ Σ a` over `a ≥ 0`, whose solutions are the
    fixed points of the iteration. So at convergence pruned terms are
    exactly zero and stay zero. For `0 < p < 1` the step uses the exact
    (non-convex) Lp proximal map; zeros are even stickier there, because a
    weight must jump past a finite threshold to return.

    The penalty is not part of the loss (the loss does not depend on `λ`):
    optimise the data loss, and the proximal step does the rest. Members of
    an ensemble can carry different strengths
    ([`with_strength`][klax.mechanics.with_strength]).

    **Arguments:**

    - `learning_rate`: a number or an optax schedule (step count → rate).
    - `p`: exponent of the penalty, in `(0, 1]` (1: L1).
    - `b1`, `b2`, `eps`: Adam's moment decays and denominator offset.

    **Returns:** an `optax.GradientTransformation`; its `update` needs `params`.
    """
    p = _check_p(p, "sparse_adam")

    def is_sparse(x):
        return isinstance(x, SparseWeights)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return SparseAdamState(jnp.zeros((), jnp.int32), zeros, zeros)

    def update(grads, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "`sparse_adam` needs the parameters: call "
                "`optimizer.update(grads, state, params)`."
            )
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        c = count.astype(jnp.float32)
        lr = jnp.asarray(
            learning_rate(count) if callable(learning_rate) else learning_rate
        )

        def step(m, v):
            m_hat = m / (1 - b1**c).astype(m.dtype)
            v_hat = v / (1 - b2**c).astype(v.dtype)
            return -lr * m_hat / (jnp.sqrt(v_hat) + eps)

        updates = jax.tree.map(step, mu, nu)

        def prox(update_node, param_node, v_node):
            if not is_sparse(param_node):
                return update_node
            w = param_node.parameter
            v_hat = v_node.parameter / (1 - b2**c).astype(w.dtype)
            scale = lr / (jnp.sqrt(v_hat) + eps)
            strength = jax.lax.stop_gradient(param_node.strength)
            new = prox_lp(w + update_node.parameter, strength * scale, p)
            return SparseWeights(new - w, jnp.zeros_like(param_node.strength))

        updates = jax.tree.map(prox, updates, params, nu, is_leaf=is_sparse)
        return updates, SparseAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)  # pyright: ignore[reportArgumentType]


# ---------------------------------------------------------------------------
# The term sum shared by the potentials


def _log_bounds(terms: Sequence[CANNTerm], log_limit: float) -> tuple[float, ...]:
    # Inner weights: identity terms have none (kept at 0), exp terms are only
    # non-negative, log terms stay below 1/log_limit^p (finite for x < log_limit).
    return tuple(
        0.0
        if t.activation == "identity"
        else (1.0 / log_limit**t.power if t.activation == "log" else float("inf"))
        for t in terms
    )


def _init_parameters(terms, log_limit, sparse, dtype, key):
    dtype = default_floating_dtype() if dtype is None else dtype
    n = len(terms)
    k_outer, k_inner = jr.split(key)
    outer = jr.uniform(k_outer, (n,), dtype, 0.5, 1.5) / n
    jitter = jr.uniform(k_inner, (n,), dtype, 0.5, 1.5)
    upper = _log_bounds(terms, log_limit)
    inner = jnp.asarray(
        [0.0 if u == 0.0 else (0.5 * u if np.isfinite(u) else 1.0) for u in upper],
        dtype,
    )
    inner = inner * jitter
    weights = (
        SparseWeights(outer, jnp.zeros((), dtype)) if sparse else NonNegative(outer)
    )
    return weights, BoundedWeights(inner, upper)


def _term_sum(terms, weights, inner, x: dict[str, Array]) -> Array:
    total = jnp.zeros((), jnp.result_type(weights.dtype, *x.values()))
    for k, term in enumerate(terms):
        u = x[term.invariant]
        if term.power == 2:
            u = u * u
        if term.activation == "identity":
            f = u
        elif term.activation == "exp":
            f = jnp.expm1(inner[k] * u)
        else:
            f = -jnp.log1p(-inner[k] * u)
        total = total + weights[k] * f
    return total


def active_terms(model: Any, atol: float = 0.0) -> np.ndarray:
    """Which terms of a CANN contribute: outer weight above `atol`, and for
    `exp`/`log` terms a non-zero inner weight. A boolean NumPy array, one
    entry per term (for an ensemble: one row per member)."""
    from .._wrappers import unwrap

    weights = np.asarray(unwrap(model.weights))
    inner = np.asarray(unwrap(model.inner))
    needs_inner = np.array([t.activation != "identity" for t in model.terms])
    return (weights > atol) & (~needs_inner | (inner > 0))


class CANN(AbstractIsotropicPotential):
    """Isotropic incompressible CANN on the isochoric invariants.

    $$W(F) = E \\sum_k a_k f_k\\bigl(w_k x_k^{p_k}\\bigr),\\quad
    x_1 = \\frac{\\bar I_1 - 3}{s_1},\\ x_2 = \\frac{\\bar I_2 - 3}{s_2}$$

    (Linka & Kuhl 2023), by default on the classical isochoric invariants
    (`invariants="isochoric"`; $\\bar I_2 = \\|\\operatorname{cof} F\\|^2$ is
    convex in `cof F` at `J = 1`, so the law is polyconvex for incompressible
    use), or on the polyconvex invariants of the PANNs
    (`invariants="polyconvex"`: $\\tilde I_1 = \\bar I_1$,
    $\\tilde I_2 = \\bar I_2^{3/2}$ shifted by $3^{3/2}$,
    polyconvex also off `J = 1`). See the module notes
    on polyconvexity and on the domain of the `log` terms. The outer weights
    `a` are `SparseWeights` (with `sparse=True`, the default) or
    `klax.NonNegative`; the inner weights `w` are clamped into their domain.
    Call [`klax.finalize`][] before evaluating.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> from klax.mechanics import CANN
        >>> W = klax.finalize(CANN(key=jax.random.key(0)))
        >>> len(W.terms), W(jnp.eye(3))
        (12, Array(0., dtype=float32))
    """

    weights: Float[Array, " n"] | Constraint
    inner: Float[Array, " n"] | Constraint
    terms: tuple[CANNTerm, ...] = eqx.field(static=True)
    invariants: Invariants = eqx.field(static=True)
    input_scale: tuple[float, float] = eqx.field(static=True)
    energy_scale: float = eqx.field(static=True)
    log_limit: float = eqx.field(static=True)

    def __init__(
        self,
        terms: Sequence[CANNTerm | tuple[Any, ...]] | None = None,
        invariants: Invariants = "isochoric",
        input_scale: float | Sequence[float] = 1.0,
        energy_scale: float = 1.0,
        log_limit: float = 1.25,
        sparse: bool = True,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `terms`: the term library (default:
          [`cann_terms()`][klax.mechanics.cann_terms], 12 terms on `I1`, `I2`).
        - `invariants`: `"isochoric"` ($\\bar I_1, \\bar I_2$, default: the
          classical invariants, so that discovered laws read like the
          catalogue of Mooney–Rivlin, Yeoh, Gent or Demiray; polyconvex at
          `J = 1`) or `"polyconvex"` ($\\tilde I_1, \\tilde I_2$, the PANNs'
          choice, polyconvex also off `J = 1`).
        - `input_scale`: positive divisor(s) `s` of the two shifted invariants,
          e.g. their ranges on the training data
          ([`invariant_scales`][klax.mechanics.invariant_scales]).
        - `energy_scale`: positive factor `E` (MPa) of the energy, e.g. the
          largest strain energy reached in the data
          ([`data_energy_scale`][klax.mechanics.data_energy_scale]); the trainable
          weights are then of order one.
        - `log_limit`: the `log` terms stay finite for scaled inputs below it.
        - `sparse`: outer weights as `SparseWeights` (for
          [`sparse_adam`][klax.mechanics.sparse_adam]) or `klax.NonNegative`.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key for the initial weights. (Keyword only.)
        """
        owner = "CANN"
        if invariants not in ("polyconvex", "isochoric"):
            raise ValueError(
                f"`{owner}(invariants=...)` must be 'polyconvex' or 'isochoric'; "
                f"got {invariants!r}."
            )
        terms = cann_terms() if terms is None else terms
        self.terms = _check_terms(terms, ISOTROPIC_INVARIANTS, owner)
        self.invariants = invariants
        self.input_scale = _scales(input_scale, ISOTROPIC_INVARIANTS, owner)  # pyright: ignore[reportAttributeAccessIssue]
        self.energy_scale = check_real(
            energy_scale, f"`{owner}(energy_scale=...)`", positive=True
        )
        self.log_limit = check_real(
            log_limit, f"`{owner}(log_limit=...)`", positive=True
        )
        self.weights, self.inner = _init_parameters(
            self.terms, self.log_limit, sparse, dtype, key
        )

    def _energy(self, I1: Array, I2_input: Array) -> Array:
        s1, s2 = self.input_scale
        ref2 = REFERENCE_I2_POLYCONVEX if self.invariants == "polyconvex" else 3.0
        x = {"I1": (I1 - 3.0) / s1, "I2": (I2_input - ref2) / s2}
        weights = jnp.asarray(self.weights)
        inner = jnp.asarray(self.inner)
        return self.energy_scale * _term_sum(self.terms, weights, inner, x)

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "CANN")
        J = check_positive_jacobian(_det(F), "CANN")
        return self.lifted_energy(F, _cofactor(F), J)

    def lifted_energy(self, F: ArrayLike, cof: ArrayLike, J: ArrayLike) -> Scalar:
        """The energy as a function of independent `(F, cof F, det F)`; jointly
        convex in them (for `J > 0`, `invariants="polyconvex"`)."""
        check_finalized(self)
        F, cof, J = jnp.asarray(F), jnp.asarray(cof), jnp.asarray(J)
        I1 = jnp.sum(F * F) * J ** (-2.0 / 3.0)
        if self.invariants == "polyconvex":
            I2 = jnp.sqrt(jnp.sum(cof * cof)) ** 3 / J**2
        else:
            I2 = jnp.sum(cof * cof) * J ** (-4.0 / 3.0)
        return self._energy(I1, I2)

    def isotropic_energy(self, I1: ArrayLike, I2: ArrayLike) -> Scalar:
        """The energy at `J = 1` as a function of the invariants `I1`, `I2`."""
        check_finalized(self)
        I1, I2 = jnp.asarray(I1), jnp.asarray(I2)
        return self._energy(I1, I2**1.5 if self.invariants == "polyconvex" else I2)


class CompressibleCANN(eqx.Module):
    """Compressible CANN: isochoric terms, optional fibre terms, a volumetric term.

    $$W(F) = E \\sum_k a_k f_k\\bigl(w_k x_k^{p_k}\\bigr)
    + \\tfrac{\\kappa}{2} (J - 1)^2,$$

    on $x_1 = (\\tilde I_1 - 3)/s_1$, $x_2 = (\\tilde I_2 - 3^{3/2})/s_2$
    (polyconvex, isochoric) and, with a structural tensor `G`,
    $x_4 = \\langle I_4 - \\operatorname{tr} G \\rangle / s_4$ with
    $I_4 = \\operatorname{tr}(C G)$ (convex in `F`) and the Macaulay bracket
    $\\langle y \\rangle = \\max(y, 0)$: fibres that only carry tension, a
    convex non-decreasing function of `I4`. The bulk modulus `κ ≥ 0` (MPa) is
    trainable (`klax.NonNegative`) but not made sparse. The isochoric terms
    and the bracket (whose derivative at zero is taken as 0) give no stress
    at `F = I`, nor does the volumetric term: `W(I) = 0`, `P(I) = 0`. With
    `bulk_modulus=0` and the incompressible load-case path the model serves
    incompressible anisotropic data.
    """

    weights: Float[Array, " n"] | Constraint
    inner: Float[Array, " n"] | Constraint
    bulk_modulus: Array | Constraint
    structural_tensor: Array | NonTrainable | None
    terms: tuple[CANNTerm, ...] = eqx.field(static=True)
    input_scale: tuple[float, ...] = eqx.field(static=True)
    energy_scale: float = eqx.field(static=True)
    log_limit: float = eqx.field(static=True)

    def __init__(
        self,
        terms: Sequence[CANNTerm | tuple[Any, ...]] | None = None,
        structural_tensor: ArrayLike | None = None,
        bulk_modulus: float = 1.0,
        input_scale: float | Sequence[float] = 1.0,
        energy_scale: float = 1.0,
        log_limit: float = 1.25,
        sparse: bool = True,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `terms`: the library; default `cann_terms()` on `I1`, `I2`, plus
          `cann_terms(["I4"])` when a structural tensor is given.
        - `structural_tensor`: symmetric `G` of shape `(3, 3)` (e.g.
          [`structural_tensor(a)`][klax.mechanics.structural_tensor]); needed
          by `I4` terms. Not trained (`klax.NonTrainable`).
        - `bulk_modulus`: initial `κ ≥ 0` (MPa).
        - `input_scale`: positive divisor(s) of the shifted invariants (one
          number, or one per invariant `I1, I2[, I4]`).
        - `energy_scale`, `log_limit`, `sparse`, `dtype`, `key`: as for
          [`CANN`][klax.mechanics.CANN].
        """
        owner = "CompressibleCANN"
        names = ("I1", "I2", "I4") if structural_tensor is not None else ("I1", "I2")
        if terms is None:
            terms = cann_terms() + (
                cann_terms(["I4"]) if structural_tensor is not None else ()
            )
        self.terms = _check_terms(terms, names, owner)
        if structural_tensor is not None:
            G = check_structural_tensor(structural_tensor, owner)
            if dtype is not None:
                G = G.astype(dtype)
            self.structural_tensor = NonTrainable(G)
        else:
            self.structural_tensor = None
        self.input_scale = _scales(input_scale, names, owner)
        self.energy_scale = check_real(
            energy_scale, f"`{owner}(energy_scale=...)`", positive=True
        )
        self.log_limit = check_real(
            log_limit, f"`{owner}(log_limit=...)`", positive=True
        )
        try:
            kappa = float(bulk_modulus)
        except (TypeError, ValueError):
            raise TypeError(
                f"`{owner}(bulk_modulus=...)` must be a number >= 0; got "
                f"{bulk_modulus!r}."
            ) from None
        if not (kappa >= 0 and np.isfinite(kappa)):
            raise ValueError(
                f"`{owner}(bulk_modulus=...)` must be a finite number >= 0; got "
                f"{bulk_modulus!r}."
            )
        self.weights, self.inner = _init_parameters(
            self.terms, self.log_limit, sparse, dtype, key
        )
        dtype = default_floating_dtype() if dtype is None else dtype
        self.bulk_modulus = NonNegative(jnp.asarray(kappa, dtype))

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "CompressibleCANN")
        J = check_positive_jacobian(_det(F), "CompressibleCANN")
        return self.lifted_energy(F, _cofactor(F), J)

    def lifted_energy(self, F: ArrayLike, cof: ArrayLike, J: ArrayLike) -> Scalar:
        """The energy as a function of independent `(F, cof F, det F)`; jointly
        convex in them for `J > 0` (polyconvexity)."""
        check_finalized(self)
        F, cof, J = jnp.asarray(F), jnp.asarray(cof), jnp.asarray(J)
        s = self.input_scale
        x = {
            "I1": (jnp.sum(F * F) * J ** (-2.0 / 3.0) - 3.0) / s[0],
            "I2": (jnp.sqrt(jnp.sum(cof * cof)) ** 3 / J**2 - REFERENCE_I2_POLYCONVEX)
            / s[1],
        }
        if self.structural_tensor is not None:
            G = jnp.asarray(self.structural_tensor)
            y = jnp.sum((F @ G) * F) - jnp.trace(G)
            x["I4"] = jnp.where(y > 0, y, 0.0) / s[2]
        weights = jnp.asarray(self.weights)
        inner = jnp.asarray(self.inner)
        iso = self.energy_scale * _term_sum(self.terms, weights, inner, x)
        kappa = jnp.asarray(self.bulk_modulus)
        return iso + 0.5 * kappa * (J - 1.0) ** 2


def cann_config_model(config: Any, *, key: PRNGKeyArray) -> CANN:
    """The CANN described by a calibration config (`model == "cann"`), for
    [`build_model`][klax.mechanics.build_model]."""
    terms = config.get("terms")
    return CANN(
        None if terms is None else [CANNTerm(*t) for t in terms],
        config.get("invariants", "isochoric"),
        input_scale=tuple(config.get("input_scale", (1.0, 1.0))),
        energy_scale=config.get("energy_scale", 1.0),
        log_limit=config.get("log_limit", 1.25),
        key=key,
    )


def cann_config(model: CANN) -> dict[str, Any]:
    """The calibration config of a CANN (the inverse of `build_model`)."""
    return {
        "model": "cann",
        "terms": [list(t) for t in model.terms],
        "invariants": model.invariants,
        "input_scale": list(model.input_scale),
        "energy_scale": model.energy_scale,
        "log_limit": model.log_limit,
    }
