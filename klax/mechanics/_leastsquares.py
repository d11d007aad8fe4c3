"""Least-squares fits of potentials: Levenberg–Marquardt on a residual vector.

Two uses in the calibration job:

- the classical baselines (neo-Hooke, Mooney–Rivlin, Ogden) are fitted by
  least squares from several starting points (the moduli first by a linear
  solve, [`solve_linear_parameters`][klax.mechanics.solve_linear_parameters]);
- a PANN trained with Adam is refined by the same solver
  ([`refine_least_squares`][klax.mechanics.refine_least_squares]): a
  second-order method converges where Adam only creeps.

Both work on any model and any residual function `residuals(model) -> r`
(a 1-d array whose sum of squares is the loss), so they do not depend on
the kind of data. The solver is `optimistix.LevenbergMarquardt`.

Constraints: the solver moves the stored (raw) parameters and the residual
is evaluated on `klax.finalize(model)`, i.e. after every constraint is
enforced (a [`klax.NonNegative`][] weight enters as `max(w, 0)`). The
returned model has its constraints applied, so it represents exactly the
function whose loss the solver minimised, and every guarantee that rests on
the constraints (convexity, monotonicity, hence polyconvexity) holds.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, PyTree

from .._wrappers import NonNegative, apply, finalize, unwrap
from ._networks import reparametrize_nonnegative

Residuals = Callable[[Any, Any], Array]


class LeastSquaresResult(NamedTuple):
    """The outcome of one least-squares solve.

    - `model`: the model after the solve, constraints applied (unfinalised,
      same structure as the input).
    - `loss`: the sum of squared residuals of `model` (a scalar array).
    - `initial_loss`: the sum of squared residuals of the input model.
    - `steps`: the number of solver steps taken.
    """

    model: Any
    loss: Array
    initial_loss: Array
    steps: Array


def _sum_squares(r: Array) -> Array:
    return jnp.sum(jnp.square(r))


def _objective(residuals: Residuals, static: PyTree) -> Callable[[PyTree, Any], Array]:
    def fn(params, args):
        model = finalize(eqx.combine(params, static))
        return jnp.ravel(residuals(model, args))

    return fn


def _is_nonnegative(x: Any) -> bool:
    return isinstance(x, NonNegative)


def _restore_nonnegative(smooth: Any, original: Any) -> Any:
    """Store the values of the softplus-parametrised weights of `smooth` (as made
    by `reparametrize_nonnegative(original)`) back in the `NonNegative`s of
    `original`; every other leaf is taken from `smooth`."""

    def restore(node, solved):
        if _is_nonnegative(node):
            value = jnp.maximum(unwrap(solved), 0.0)
            return eqx.tree_at(lambda c: c.parameter, node, value)
        return solved

    return jax.tree.map(restore, original, smooth, is_leaf=_is_nonnegative)


def refine_least_squares(
    model: Any,
    residuals: Residuals,
    args: Any = None,
    *,
    max_steps: int = 500,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    minimum: float = 1e-10,
) -> LeastSquaresResult:
    """Minimise the sum of squared residuals of a model by Levenberg–Marquardt.

    All inexact arrays of `model` are solver variables (arrays inside a
    [`klax.NonTrainable`][] get zero derivatives and stay put). The residual is
    evaluated on the finalised model, and the result has its constraints
    applied, so it satisfies every constraint of the input. The result is
    never worse than the input: if the solve fails or ends with a larger or
    non-finite loss, the input model is returned (with its loss). Works
    under `jax.jit` and `jax.vmap` (e.g. over the members of an ensemble).

    **Arguments:**

    - `model`: an unfinalised (or plain) model pytree.
    - `residuals`: a function `residuals(model, args)` of the *finalised*
      model returning the residual vector (any shape; flattened). Its sum of
      squares is the loss.
    - `args`: passed to `residuals` (e.g. the training data).
    - `max_steps`: the most solver steps.
    - `rtol`, `atol`: the solver's step-size tolerances (its Cauchy
      termination on parameters and on the loss).
    - `minimum`: every [`klax.NonNegative`][] weight is solved for as
      `softplus(raw)` (so that a weight at zero keeps a derivative), starting
      from at least this value; the result stores the represented value
      back in the `NonNegative`.

    **Returns:** a [`LeastSquaresResult`][klax.mechanics.LeastSquaresResult].

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import NeoHooke, refine_least_squares
        >>> lam = jnp.linspace(1.0, 3.0, 5)
        >>> data = 0.5 * (lam - lam**-2)
        >>> def residuals(m, data):
        ...     return m.mu * (lam - lam**-2) - data
        >>> result = refine_least_squares(NeoHooke(0.1), residuals, data)
        >>> round(float(result.model.mu), 6)
        0.5
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)
    fn = _objective(residuals, static)
    initial = _sum_squares(fn(params, args))
    # Non-negative weights are solved for as softplus(raw): a clamped weight
    # would have a zero derivative once the solver pushed it below zero, and
    # never come back (the collapse of projected training).
    smooth = reparametrize_nonnegative(apply(model), minimum)
    smooth_params, smooth_static = eqx.partition(smooth, eqx.is_inexact_array)
    solver = optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    solution = optx.least_squares(
        _objective(residuals, smooth_static),
        solver,
        smooth_params,
        args,
        max_steps=max_steps,
        throw=False,
    )
    candidate = _restore_nonnegative(eqx.combine(solution.value, smooth_static), model)
    cand_params, _ = eqx.partition(candidate, eqx.is_inexact_array)
    loss = _sum_squares(fn(cand_params, args))
    better = jnp.isfinite(loss) & (loss <= initial)
    chosen = jax.tree.map(
        lambda new, old: jnp.where(better, new, old), cand_params, params
    )
    return LeastSquaresResult(
        model=eqx.combine(chosen, static),
        loss=jnp.where(better, loss, initial),
        initial_loss=initial,
        steps=solution.stats["num_steps"],
    )


def solve_linear_parameters(
    model: Any,
    residuals: Residuals,
    args: Any,
    where: Callable[[Any], Any],
) -> Any:
    """Set the parameters in which the residual is affine to their least-squares values.

    For parameters `θ` selected by `where` that enter the residual affinely
    (the moduli of neo-Hooke, Mooney–Rivlin and Ogden models, with the Ogden
    exponents held), `r(θ) = r(θ₀) + J (θ - θ₀)` exactly, so one linear
    least-squares solve gives the best `θ` for the other parameters. Used as
    the starting point of a nonlinear fit (variable projection's first step).

    **Arguments:**

    - `model`: a plain (finalised) model.
    - `residuals`, `args`: as for
      [`refine_least_squares`][klax.mechanics.refine_least_squares].
    - `where`: `model -> array or tuple of arrays`, the affine parameters.

    **Returns:** the model with those parameters replaced.
    """
    selected = where(model)
    leaves, treedef = jax.tree.flatten(selected)
    sizes = [jnp.size(x) for x in leaves]
    theta0 = jnp.concatenate([jnp.ravel(x) for x in leaves])

    def unflatten(theta):
        parts, start = [], 0
        for x, n in zip(leaves, sizes, strict=True):
            parts.append(theta[start : start + n].reshape(jnp.shape(x)))
            start += n
        return jax.tree.unflatten(treedef, parts)

    def r(theta):
        return jnp.ravel(residuals(eqx.tree_at(where, model, unflatten(theta)), args))

    r0 = r(theta0)
    jac = jax.jacfwd(r)(theta0)
    step = jnp.linalg.lstsq(jac, -r0)[0]
    theta = theta0 + step
    ok = jnp.all(jnp.isfinite(theta))
    return eqx.tree_at(where, model, unflatten(jnp.where(ok, theta, theta0)))
