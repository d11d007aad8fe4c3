"""Losses: the objective a training step minimises.

A loss maps `(model, batch, run_state)` to a scalar. Subclass [`Loss`][klax.Loss]
and implement `value`, or decorate a plain function with [`loss`][klax.loss].
Calling a loss unwraps the model first (see [`klax.unwrap`][]), so wrapped
parameters such as `NonNegative` weights are resolved inside the differentiated
function, and gradients have the structure of the wrapped model.
"""

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree, Scalar

from ._wrappers import unwrap


class Loss(ABC):
    """Abstract base of all losses: implement `value(model, batch, run_state)`.

    `value` receives an already unwrapped model and returns a scalar. klax always
    passes its three arguments positionally, so a subclass may name them freely.
    A subclass that implements only `value` is complete and is built without
    arguments. Loss objects are hashable (by identity), as they are passed to
    jitted functions as static arguments.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> class SquaredOutput(klax.Loss):
        ...     def value(self, model, batch, run_state):
        ...         return jnp.sum(model(batch) ** 2)
        >>> SquaredOutput()(lambda x: 2.0 * x, jnp.array([1.0, 2.0]), None)
        Array(20., dtype=float32)
    """

    @abstractmethod
    def value(self, model: Any, batch: PyTree, run_state: Any) -> Scalar:
        """The loss of an unwrapped `model` on `batch`.

        **Arguments:**

        - `model`: the model, with no wrappers left.
        - `batch`: one batch of data (any pytree, possibly `None`).
        - `run_state`: an arbitrary user object carried through training (may be
          `None`).

        **Returns:**

        A scalar (0-d array).
        """

    def __call__(self, model: Any, batch: PyTree, run_state: Any) -> Scalar:
        """Unwrap `model` and return `self.value(model, batch, run_state)`."""
        return self.value(unwrap(model), batch, run_state)

    def value_and_grad(
        self, model: Any, batch: PyTree, run_state: Any
    ) -> tuple[Scalar, PyTree]:
        """The loss and its gradient with respect to the inexact arrays of `model`.

        The gradient is taken through [`klax.unwrap`][], so it has the structure
        of the (still wrapped) `model`; non-differentiable leaves are `None`.
        """
        return eqx.filter_value_and_grad(self)(model, batch, run_state)

    def partitioned_value(
        self, params: PyTree, static: PyTree, batch: PyTree, run_state: Any
    ) -> Scalar:
        """The loss of `eqx.combine(params, static)`.

        Equals `self(model, batch, run_state)` for
        `params, static = eqx.partition(model, eqx.is_inexact_array)`. This is
        the form line-search optimizers (e.g. `optax.lbfgs`) evaluate as
        `value_fn(params)` with `static`, `batch` and `run_state` bound by keyword.
        """
        return self(eqx.combine(params, static), batch, run_state)


class _FunctionLoss(Loss):
    """A `Loss` whose `value` calls a wrapped function (built by `klax.loss`)."""

    def __init__(self, func: Callable[[Any, PyTree, Any], Scalar]):
        functools.update_wrapper(self, func)
        # Set after `update_wrapper`, which copies `func.__dict__` onto `self`.
        self._func = func

    def value(self, model: Any, batch: PyTree, run_state: Any) -> Scalar:
        return self._func(model, batch, run_state)

    def __repr__(self) -> str:
        name = getattr(self._func, "__qualname__", None) or repr(self._func)
        return f"<klax.loss {name}>"


def loss(func: Callable[[Any, PyTree, Any], Scalar]) -> Loss:
    """Turn `func(model, batch, run_state) -> scalar` into a [`Loss`][klax.Loss].

    The returned object calls `func` positionally (parameter names do not
    matter) and carries `func`'s `__name__`, `__doc__` and `__wrapped__`. It may
    be stacked on `@staticmethod` in a class body.

    **Arguments:**

    - `func`: a callable taking an unwrapped model, a batch and a run state.

    **Returns:**

    A `Loss` instance.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> @klax.loss
        ... def output_sum(model, batch, run_state):
        ...     return jnp.sum(model(batch))
        >>> output_sum(lambda x: 3.0 * x, jnp.array([1.0, 2.0]), None)
        Array(9., dtype=float32)
    """
    if isinstance(func, staticmethod):
        func = func.__func__
    if not callable(func):
        raise TypeError(
            "`klax.loss(func)` expects a callable "
            f"`func(model, batch, run_state)`; got {func!r} of type "
            f"{type(func).__name__}."
        )
    return _FunctionLoss(func)


def _predict(name: str, model: Any, data: Any) -> tuple[jax.Array, jax.Array]:
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(
            f"`klax.{name}` expects the batch to be a pair `(x, y)`; got "
            f"{type(data).__name__}"
            + (f" of length {len(data)}." if isinstance(data, tuple | list) else ".")
        )
    x, y = data
    y_pred = jnp.asarray(jax.vmap(model)(x))
    y = jnp.asarray(y)
    if y_pred.shape != y.shape:
        raise ValueError(
            f"`klax.{name}` needs predictions and targets of equal shape; the "
            f"model gave {y_pred.shape} but y has shape {y.shape}. (No implicit "
            "broadcasting: reshape y, or give the model an output size that "
            "matches it, e.g. 'scalar' for y of shape (n,).)"
        )
    return y_pred, y


@loss
def mse(model, data, run_state):
    """Mean squared error of `jax.vmap(model)(x)` against `y` for `data = (x, y)`.

    The mean is over all elements. Predictions and targets must have the same
    shape. `run_state` is ignored.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 4.0, 5.0])
        >>> klax.mse(lambda x: 1.0 * x + 0.0, (x, y), None)
        Array(4., dtype=float32)
    """
    del run_state
    y_pred, y = _predict("mse", model, data)
    return jnp.mean(jnp.square(y_pred - y))


@loss
def mae(model, data, run_state):
    """Mean absolute error of `jax.vmap(model)(x)` against `y` for `data = (x, y)`.

    The mean is over all elements. Predictions and targets must have the same
    shape. `run_state` is ignored.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 4.0, 5.0])
        >>> klax.mae(lambda x: 1.0 * x + 0.0, (x, y), None)
        Array(2., dtype=float32)
    """
    del run_state
    y_pred, y = _predict("mae", model, data)
    return jnp.mean(jnp.abs(y_pred - y))
