"""Wrappers that stand in for parameters: unwrappables and constraints.

A wrapper replaces a node of a model (usually a parameter array).
[`unwrap`][klax.unwrap] swaps every wrapper for the value it represents; this is
differentiable and is done inside the loss. A [`Constraint`][klax.Constraint]
also knows how to edit its stored parameter ([`apply`][klax.apply]), which the
training step does after every optimizer update, e.g. to clamp weights at zero.

klax wrappers are `paramax.AbstractUnwrappable`s, so `paramax.unwrap` and
`klax.unwrap` both resolve trees that mix klax and paramax wrappers.
"""

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import paramax
from jaxtyping import Array, PyTree

T = TypeVar("T")

_FINALIZE_MESSAGE = "Model must be finalized before calling, see `klax.finalize`."


class ContainsUnwrappablesError(RuntimeError):
    """Raised when a model that still holds wrappers is called.

    Call [`klax.finalize`][] on the model first. (Training does not need this:
    the losses unwrap the model themselves.)
    """


class Unwrappable(paramax.AbstractUnwrappable[T], Generic[T]):
    """Abstract base of all wrappers: a pytree node that stands for a value.

    Subclasses declare their own fields and implement `unwrap`, which returns
    the represented value assuming no wrapped sub-nodes remain.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> class Zero(klax.Unwrappable):
        ...     parameter: jnp.ndarray
        ...     def unwrap(self):
        ...         return jnp.zeros_like(self.parameter)
        >>> klax.unwrap((1, Zero(jnp.ones(2))))
        (1, Array([0., 0.], dtype=float32))
    """

    @abstractmethod
    def unwrap(self) -> T:
        """Return the represented value, assuming no wrapped sub-nodes remain."""


def _is_wrapper(x: Any) -> bool:
    return isinstance(x, paramax.AbstractUnwrappable)


def unwrap(tree: PyTree) -> PyTree:
    """Replace every wrapper in `tree` by the value it represents.

    Nested wrappers are resolved innermost first. Other nodes are unchanged.
    Works on klax and paramax wrappers alike.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> klax.unwrap(("abc", 1, klax.Parameterize(jnp.exp, jnp.zeros(3))))
        ('abc', 1, Array([1., 1., 1.], dtype=float32))
    """

    def resolve(node):
        if _is_wrapper(node):
            return _map_children(node, resolve).unwrap()
        return node

    return jax.tree.map(resolve, tree, is_leaf=_is_wrapper)


def _map_children(wrapper: Any, fn: Callable[[Any], Any]) -> Any:
    """Map `fn` over the wrapper nodes (and other leaves) inside `wrapper`'s fields."""
    return jax.tree.map(
        fn, wrapper, is_leaf=lambda x: x is not wrapper and _is_wrapper(x)
    )


class Parameterize(Unwrappable[T]):
    """Represent the value `fn(*args, **kwargs)`.

    Any of `fn`, `args` and `kwargs` may hold trainable arrays, so this
    expresses a reparametrisation, e.g. a positive weight as `exp(log_w)`.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> klax.unwrap(klax.Parameterize(jnp.diag, jnp.ones(2)))
        Array([[1., 0.],
               [0., 1.]], dtype=float32)
    """

    fn: Callable[..., T]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __init__(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = kwargs

    def unwrap(self) -> T:
        return self.fn(*self.args, **self.kwargs)


class NonTrainable(Unwrappable[T]):
    """Mark a subtree as non-trainable: gradients through it are zero.

    Optimizer terms that do not use gradients (e.g. weight decay) can still
    change the wrapped arrays.
    """

    tree: T

    def unwrap(self) -> T:
        arrays, rest = eqx.partition(self.tree, eqx.is_array_like)
        return eqx.combine(jax.lax.stop_gradient(arrays), rest)


def non_trainable(tree: PyTree) -> PyTree:
    """Wrap each inexact array and each constraint of `tree` in a `NonTrainable`.

    Nodes that already are `NonTrainable` (klax's or paramax's) are left alone;
    other wrappers are entered; non-floating leaves are unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> wrapped = klax.non_trainable((jnp.ones(3), 1))
        >>> type(wrapped[0]).__name__, wrapped[1]
        ('NonTrainable', 1)
    """

    frozen = (NonTrainable, paramax.NonTrainable)

    def is_leaf(x):
        return isinstance(x, (*frozen, Constraint)) or eqx.is_inexact_array(x)

    def wrap(x):
        if isinstance(x, frozen):
            return x
        if isinstance(x, Constraint) or eqx.is_inexact_array(x):
            return NonTrainable(x)
        return x

    return jax.tree.map(wrap, tree, is_leaf=is_leaf)


def _check_square(parameter: Any) -> None:
    shape = jnp.shape(unwrap(parameter))
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(
            "Wrapped parameter must be an array of shape (..., N, N) but has "
            f"shape {shape}."
        )


class Symmetric(Unwrappable[Array]):
    """Represent the symmetric part `(A + Aᵀ) / 2` of a square array.

    The transpose acts on the last two axes; leading axes are batch axes.
    The result is exactly (bitwise) symmetric.
    """

    parameter: Array

    def __init__(self, parameter: Array):
        _check_square(parameter)
        self.parameter = parameter

    def unwrap(self) -> Array:
        return 0.5 * (self.parameter + self.parameter.mT)


class SkewSymmetric(Unwrappable[Array]):
    """Represent the skew-symmetric part `(A - Aᵀ) / 2` of a square array.

    The transpose acts on the last two axes; leading axes are batch axes.
    The result is exactly (bitwise) antisymmetric.
    """

    parameter: Array

    def __init__(self, parameter: Array):
        _check_square(parameter)
        self.parameter = parameter

    def unwrap(self) -> Array:
        return 0.5 * (self.parameter - self.parameter.mT)


class Constraint(Unwrappable[Array]):
    """Abstract wrapper whose stored parameter is edited after each update.

    Subclasses declare their own fields and implement `unwrap` (the
    represented value) and `apply` (a copy with the constraint enforced, e.g.
    via `eqx.tree_at`). Constraints should not be nested in each other.
    """

    @abstractmethod
    def apply(self) -> Self:
        """Return a copy of this wrapper with the constraint enforced."""


def apply(tree: PyTree) -> PyTree:
    """Enforce every constraint in `tree` (innermost first).

    Each [`Constraint`][klax.Constraint] is replaced by the result of its
    `apply`; the result still contains the constraint objects.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> klax.apply(klax.NonNegative(jnp.array([-1.0, 2.0]))).parameter
        Array([0., 2.], dtype=float32)
    """

    def enforce(node):
        if _is_wrapper(node):
            node = _map_children(node, enforce)
            if isinstance(node, Constraint):
                node = node.apply()
        return node

    return jax.tree.map(enforce, tree, is_leaf=_is_wrapper)


class NonNegative(Constraint):
    """Constrain a parameter to be element-wise non-negative (by clamping).

    `unwrap` returns the parameter unchanged; `apply` clamps it at zero.
    Training applies the constraint after every update.
    """

    parameter: Array

    def unwrap(self) -> Array:
        return self.parameter

    def apply(self) -> Self:
        return eqx.tree_at(lambda c: c.parameter, self, jnp.maximum(self.parameter, 0))


def finalize(tree: PyTree) -> PyTree:
    """Apply all constraints, then unwrap: the result is a plain, callable model.

    Keep training the un-finalized model; the finalized one no longer carries
    its constraints.
    """
    return unwrap(apply(tree))


def _contains(tree: PyTree, kind: type) -> bool:
    leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, kind))
    return any(isinstance(leaf, kind) for leaf in leaves)


def contains_unwrappables(tree: PyTree) -> bool:
    """Whether `tree` (or a node in it) is a wrapper (klax or paramax)."""
    return _contains(tree, paramax.AbstractUnwrappable)


def contains_constraints(tree: PyTree) -> bool:
    """Whether `tree` (or a node in it) is a [`Constraint`][klax.Constraint]."""
    return _contains(tree, Constraint)


def check_finalized(module: Any) -> None:
    """Raise `ContainsUnwrappablesError` if `module` still holds wrappers."""
    if contains_unwrappables(module):
        raise ContainsUnwrappablesError(_FINALIZE_MESSAGE)
