"""Helpers shared by the klax networks: per-neuron activations and input checks.

An activation may be a plain function or an `eqx.Module` holding trainable
arrays (a learnable activation). A layer of `n` neurons stores it
*replicated*: every array leaf gets a new leading axis of length `n`, so that
each neuron owns an independent copy of the parameters. Plain functions have
no array leaves and are stored unchanged.
"""

import operator
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .._misc import check_callable

Size = int | Literal["scalar"]


def identity(x: Array) -> Array:
    """The identity, default final activation of the networks."""
    return x


def check_activation(activation: Any, owner: str, name: str) -> None:
    """Raise `TypeError` unless `activation` is callable."""
    expected = "callable (a function or an `eqx.Module` with `__call__`)"
    check_callable(activation, f"`{owner}({name}=...)`", expected)


def replicate(activation: Callable, size: Size | None) -> Callable:
    """Store `activation` for a layer of `size` neurons (one copy per neuron).

    Every array leaf gets a new leading axis of length `size`. For a `"scalar"`
    size (or `None`, an unused activation) the activation is returned as is.
    """
    if size is None or size == "scalar":
        return activation
    n = operator.index(size)

    def copy(leaf: Any) -> Any:
        if eqx.is_array(leaf):
            return jnp.broadcast_to(leaf, (n, *jnp.shape(leaf)))
        return leaf

    return jax.tree.map(copy, activation)


def apply_per_neuron(activation: Callable, x: Array) -> Array:
    """Apply copy `j` of a replicated activation to the scalars `x[..., j]`.

    Vectorised with `jax.vmap` over the feature (last) axis of `x` and the
    leading axis of the activation's arrays.
    """
    params, static = eqx.partition(activation, eqx.is_array)

    def neuron(p: Any, xj: Array) -> Array:
        return eqx.combine(p, static)(xj)

    return jax.vmap(neuron, in_axes=(0, -1), out_axes=-1)(params, x)


def batch_shape(x: ArrayLike, size: Size, name: str, owner: str) -> tuple[int, ...]:
    """Check that `x` fits `size` and return its leading (batch) shape.

    A `"scalar"` size needs shape `()`; an int size `n` needs shape `(..., n)`.
    """
    shape = jnp.shape(x)
    if size == "scalar":
        if shape != ():
            raise ValueError(
                f"`{owner}` expects {name} of shape () because its size is "
                f"'scalar'; got {name} of shape {shape}. Use jax.vmap for batches."
            )
        return ()
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(
            f"`{owner}` expects {name} of shape ({size},) (leading batch axes "
            f"allowed); got {name} of shape {shape}."
        )
    return tuple(shape[:-1])
