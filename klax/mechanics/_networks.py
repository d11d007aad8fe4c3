"""Input-convex networks with per-input monotonicity, and a positivity wrapper.

Row-vector convention throughout: a linear map is `x @ W + b` with `W` of
shape `(in, out)`.
"""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from .._initializers import SupportedInitializer, hoedt_bias, hoedt_normal
from .._misc import check_widths
from .._wrappers import NonNegative, Parameterize
from ..nn import InputSplitLinear


def _inverse_softplus(y: Array) -> Array:
    # softplus(x) = y  <=>  x = y + log(-expm1(-y)), stable for small and large y.
    return y + jnp.log(-jnp.expm1(-y))


def softplus_positive(parameter: ArrayLike, minimum: float = 1e-6) -> Parameterize:
    """Represent a positive parameter as `softplus(raw)`: a positivity wrapper.

    An alternative to the projection of [`klax.NonNegative`][]: the stored
    parameter `raw` is unconstrained and the represented value
    `softplus(raw)` is strictly positive, so a weight can become small but
    never sticks at exactly zero, and its gradient never vanishes entirely.
    Usable wherever a `weight_wrap` is accepted.

    **Arguments:**

    - `parameter`: the initial (positive) value; values below `minimum` are
      raised to `minimum` before inverting the softplus.
    - `minimum`: smallest initial value, default `1e-6`.

    **Returns:** a [`klax.Parameterize`][] representing `parameter`.

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> from klax.mechanics import softplus_positive
        >>> w = softplus_positive(jnp.array([0.5, 2.0]))
        >>> type(w).__name__, klax.unwrap(w).round(4)
        ('Parameterize', Array([0.5, 2. ], dtype=float32))
    """
    parameter = jnp.asarray(parameter)
    raw = _inverse_softplus(jnp.maximum(parameter, minimum))
    return Parameterize(jax.nn.softplus, raw)


def reparametrize_nonnegative(tree: PyTree, minimum: float = 1e-6) -> PyTree:
    """Replace every [`klax.NonNegative`][] in `tree` by a softplus parametrisation.

    Each becomes [`softplus_positive`][klax.mechanics.softplus_positive] of its
    parameter.

    Turns a network whose constrained weights are projected onto `w >= 0`
    after each update (e.g. a `klax.nn.FICNN`) into one whose weights are
    `softplus(raw) > 0` by construction, with the same represented values
    (up to `minimum`). Convexity and monotonicity guarantees are unchanged.

    **Arguments:**

    - `tree`: any pytree, typically a model.
    - `minimum`: smallest represented value (weights clamped at zero become
      this), default `1e-6`.

    **Returns:** the tree with the wrappers swapped.
    """

    def swap(node):
        if isinstance(node, NonNegative):
            return softplus_positive(node.parameter, minimum)
        return node

    return jax.tree.map(swap, tree, is_leaf=lambda x: isinstance(x, NonNegative))


class PartiallyMonotoneFICNN(eqx.Module):
    """A scalar, fully input-convex network that is non-decreasing in chosen inputs.

    With hidden states `z_k`, monotone inputs `x_m` and free inputs `x_f`:

    $$z_1 = \\sigma(x_m A_0 + x_f B_0 + b_0),\\quad
    z_{k+1} = \\sigma(z_k W_k + x_m A_k + x_f B_k + b_k),\\quad
    y = z_L w + x_m a + x_f b + c.$$

    Each layer is a [`klax.nn.InputSplitLinear`][] with one weight per input
    block: `W_k` and `A_k` are non-negative (wrapped in [`klax.NonNegative`][]),
    `B_k` is free. With `σ` convex and non-decreasing (softplus), `y` is
    convex in all inputs and non-decreasing in the monotone ones. This is the
    network a physics-augmented potential needs when some inputs (e.g. `J`)
    may act non-monotonically while others (`I1`, `I2`, ...) may not.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> from klax.mechanics import PartiallyMonotoneFICNN
        >>> net = PartiallyMonotoneFICNN((True, True, False), [4],
        ...                              key=jax.random.key(0))
        >>> klax.finalize(net)(jnp.zeros(3)).shape
        ()
    """

    layers: tuple[InputSplitLinear, ...]
    activation: Callable[[Array], Array]
    non_decreasing: tuple[bool, ...] = eqx.field(static=True)
    width_sizes: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        non_decreasing: Sequence[bool],
        width_sizes: Sequence[int],
        activation: Callable[[Array], Array] = jax.nn.softplus,
        weight_init: SupportedInitializer = jax.nn.initializers.he_normal(),
        constrained_weight_init: SupportedInitializer = hoedt_normal(),
        constrained_bias_init: SupportedInitializer = hoedt_bias(),
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `non_decreasing`: one flag per input; the network is non-decreasing in
          the inputs flagged `True`. The input has shape `(len(non_decreasing),)`.
        - `width_sizes`: hidden widths, e.g. `[8]` (may be empty: then the
          network is affine, `y = x_m a + x_f b + c`).
        - `activation`: convex, non-decreasing activation (default softplus).
        - `weight_init`: initializer of the free weights `B_k`.
        - `constrained_weight_init`, `constrained_bias_init`: initializers of the
          non-negative weights and of the biases (Hoedt & Klambauer 2023 by
          default).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        if isinstance(non_decreasing, (str, bytes)) or not isinstance(
            non_decreasing, Sequence
        ):
            raise TypeError(
                "`PartiallyMonotoneFICNN(non_decreasing=...)` must be a list/tuple "
                f"of bools, one per input; got {non_decreasing!r}."
            )
        flags = tuple(non_decreasing)
        if not flags or not all(isinstance(f, (bool, np.bool_)) for f in flags):
            raise ValueError(
                "`PartiallyMonotoneFICNN(non_decreasing=...)` must be a non-empty "
                f"list/tuple of bools; got {non_decreasing!r}."
            )
        widths = check_widths(width_sizes, "PartiallyMonotoneFICNN")
        m = sum(bool(f) for f in flags)
        f = len(flags) - m
        keys = jax.random.split(key, len(widths) + 1)
        in_sizes: tuple[int | None, ...] = (None, *widths)
        out_sizes = (*widths, "scalar")
        zeros = jax.nn.initializers.zeros
        # Empty input blocks get the zeros initializer (fan-in based ones divide
        # by the block size).
        mono_init = constrained_weight_init if m else zeros
        free_init = weight_init if f else zeros
        layers = []
        for y_in, out, layer_key in zip(in_sizes, out_sizes, keys, strict=True):
            if y_in is None:
                sizes = (m, f)
                inits = (mono_init, free_init)
                wraps = (NonNegative, None)
            else:
                sizes = (y_in, m, f)
                inits = (constrained_weight_init, mono_init, free_init)
                wraps = (NonNegative, NonNegative, None)
            layers.append(
                InputSplitLinear(
                    sizes,
                    out,
                    inits,
                    bias_init=constrained_bias_init,
                    weight_wraps=wraps,
                    dtype=dtype,
                    key=layer_key,
                )
            )
        self.layers = tuple(layers)
        self.activation = activation
        self.non_decreasing = tuple(bool(f) for f in flags)
        self.width_sizes = widths

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(len(non_decreasing),)` (use `jax.vmap` for
          batches).
        - `key`: ignored. (Keyword only argument.)

        **Returns:** a scalar.
        """
        del key
        x = jnp.asarray(x)
        n = len(self.non_decreasing)
        if x.shape != (n,):
            raise ValueError(
                f"`PartiallyMonotoneFICNN` expects an input of shape ({n},); got "
                f"shape {x.shape}. Use jax.vmap for batches."
            )
        mono = np.flatnonzero(np.array(self.non_decreasing, dtype=bool))
        free = np.flatnonzero(~np.array(self.non_decreasing, dtype=bool))
        x_m, x_f = x[mono], x[free]
        if not self.width_sizes:
            return self.layers[0](x_m, x_f)
        z = self.activation(self.layers[0](x_m, x_f))
        for layer in self.layers[1:-1]:
            z = self.activation(layer(z, x_m, x_f))
        return self.layers[-1](z, x_m, x_f)
