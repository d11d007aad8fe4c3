"""Model inspection tools."""

import math

import equinox as eqx
import jax
import paramax
from jaxtyping import PyTree

from ._wrappers import NonTrainable

_FROZEN = (NonTrainable, paramax.NonTrainable)


def count_parameters(model: PyTree) -> int:
    """Count the trainable scalars of `model`.

    Sums the sizes of all floating and complex arrays (JAX or NumPy), leaving
    out everything inside a `NonTrainable`. Python numbers and integer arrays do
    not count. A tree without parameters gives 0.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> klax.count_parameters((jnp.ones((3, 3)), klax.NonTrainable(jnp.ones(2))))
        9
    """
    leaves = jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, _FROZEN))
    return sum(
        math.prod(leaf.shape)
        for leaf in leaves
        if not isinstance(leaf, _FROZEN) and eqx.is_inexact_array(leaf)
    )
