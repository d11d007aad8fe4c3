"""Multi-layer perceptron with one width per hidden layer.

All linear maps use the row-vector convention `y = x @ W + b` with weights of
shape `(in, out)`.
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.random as jr
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._initializers import SupportedInitializer
from .._misc import check_size, check_widths
from .._wrappers import check_finalized
from ._activations import (
    apply_per_neuron,
    batch_shape,
    check_activation,
    identity,
    replicate,
)
from ._linear import Linear, Wrap

Size = int | Literal["scalar"]
# Default initializers, built once (they are stateless).
_he_normal = jax.nn.initializers.he_normal()


class MLP(eqx.Module):
    """Multi-layer perceptron whose hidden layers may differ in width.

    Like `equinox.nn.MLP`, but with one width per hidden layer, softplus as the
    default activation, klax initializers and optional parameter wrappers.
    Activations act per neuron: a learnable activation (an `eqx.Module` with
    array parameters) is copied once per neuron, and neuron `j` uses copy `j`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> mlp = klax.nn.MLP(3, "scalar", [16, 16], key=jax.random.key(0))
        >>> mlp(jnp.ones(3)).shape
        ()
    """

    layers: tuple[Linear, ...]
    activations: tuple[Callable, ...]
    final_activation: Callable
    use_bias: bool = eqx.field(static=True)
    use_final_bias: bool = eqx.field(static=True)
    in_size: Size = eqx.field(static=True)
    out_size: Size = eqx.field(static=True)
    width_sizes: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_size: Size,
        out_size: Size,
        width_sizes: Sequence[int],
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        weight_wrap: Wrap | None = None,
        bias_wrap: Wrap | None = None,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `in_size`: input size (int, or `"scalar"` for a 0-d input).
        - `out_size`: output size (int, or `"scalar"` for a 0-d output).
        - `width_sizes`: widths of the hidden layers, e.g. `[32, 16]`; `[]`
          gives a single linear layer.
        - `weight_init`, `bias_init`: initializers of all weights and biases
          (klax or JAX initializers).
        - `activation`: hidden activation, applied per neuron; may be an
          `eqx.Module` with parameters, which is copied once per neuron.
        - `final_activation`: activation of the output layer (identity by
          default), per neuron unless `out_size` is `"scalar"`.
        - `use_bias`: whether the hidden layers have biases.
        - `use_final_bias`: whether the output layer has a bias.
        - `weight_wrap`, `bias_wrap`: optional wrappers (e.g. `klax.NonNegative`)
          applied to every layer's weight resp. bias.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "klax.nn.MLP"
        check_size(in_size, f"`{owner}(in_size=...)`")
        check_size(out_size, f"`{owner}(out_size=...)`")
        widths = check_widths(width_sizes, owner)
        check_activation(activation, owner, "activation")
        check_activation(final_activation, owner, "final_activation")
        keys = jr.split(key, len(widths) + 1)
        in_sizes = (in_size, *widths)
        out_sizes = (*widths, out_size)
        self.layers = tuple(
            Linear(
                in_sizes[k],
                out_sizes[k],
                weight_init,
                bias_init,
                use_bias if k < len(widths) else use_final_bias,
                weight_wrap,
                bias_wrap,
                dtype=dtype,
                key=keys[k],
            )
            for k in range(len(widths) + 1)
        )
        self.activations = tuple(replicate(activation, w) for w in widths)
        self.final_activation = replicate(final_activation, out_size)
        self.use_bias = use_bias
        self.use_final_bias = use_final_bias
        self.in_size = in_size
        self.out_size = out_size
        self.width_sizes = widths

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(in_size,)`, or `()` for `"scalar"`. Use
          `jax.vmap` for batches.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** an array of shape `(out_size,)`, or `()` for `"scalar"`.
        """
        del key
        check_finalized(self)
        batch_shape(x, self.in_size, "x", "klax.nn.MLP")
        with jax.named_scope("klax.nn.MLP"):
            for layer, activation in zip(
                self.layers[:-1], self.activations, strict=True
            ):
                x = apply_per_neuron(activation, layer(x))
            x = self.layers[-1](x)
            if self.out_size == "scalar":
                return self.final_activation(x)
            return apply_per_neuron(self.final_activation, x)
