"""Linear layers with custom initializers and parameter wrappers."""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._initializers import SupportedInitializer, canonicalize_initializer
from .._misc import check_size, default_floating_dtype, size_as_int, static_size
from .._wrappers import Unwrappable, check_finalized

Size = int | Literal["scalar"]
Wrap = Callable[[Array], Any]


def _as_input(x: ArrayLike, size: Size, what: str) -> Array:
    """Convert one layer input to an array; a `"scalar"` input becomes shape `(1,)`."""
    if size == "scalar":
        if jnp.shape(x) != ():
            raise ValueError(
                f"{what} must have scalar shape () because its size is 'scalar', "
                f"but has shape {jnp.shape(x)}. Use jax.vmap for batches."
            )
        return jnp.reshape(jnp.asarray(x), (1,))
    shape = jnp.shape(x)
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(
            f"{what} must have shape (..., {size}) because its size is {size}, "
            f"but has shape {shape}."
        )
    return jnp.asarray(x)


def _with_bias(y: Array, bias: Array | None, out_features: Size) -> Array:
    if bias is not None:
        y = y + jnp.broadcast_to(bias, y.shape)
    if out_features == "scalar":
        y = y[..., 0]
    return y


class Linear(eqx.Module):
    """A linear map `y = x @ W + b` with custom initializers and wrappers.

    Like `equinox.nn.Linear`, but the weight has shape `(in, out)` (row-vector
    convention), the bias initializer is told `fan_in`, and weight and bias
    may be wrapped (e.g. `klax.NonNegative`) to enforce constraints.

    Example:
        >>> import jax
        >>> import klax
        >>> layer = klax.nn.Linear(3, "scalar", jax.nn.initializers.he_normal(),
        ...                        key=jax.random.key(0))
        >>> layer(jax.numpy.ones(3)).shape
        ()
    """

    weight: Array | Unwrappable[Array]
    bias: Array | Unwrappable[Array] | None
    in_features: Size = eqx.field(static=True)
    out_features: Size = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(
        self,
        in_features: Size,
        out_features: Size,
        weight_init: SupportedInitializer,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        use_bias: bool = True,
        weight_wrap: Wrap | None = None,
        bias_wrap: Wrap | None = None,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `in_features`: input size; the input has shape `(in_features,)`, or
          `()` for the string `"scalar"`.
        - `out_features`: output size; the output has shape `(out_features,)`,
          or `()` for `"scalar"`.
        - `weight_init`: initializer of the `(in, out)` weight (a klax or JAX
          initializer).
        - `bias_init`: initializer of the bias; it receives `fan_in = in`.
        - `use_bias`: whether to add a bias.
        - `weight_wrap`, `bias_wrap`: optional callables applied to the freshly
          initialised array, typically a wrapper class such as `klax.NonNegative`.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        check_size(in_features, "in_features")
        check_size(out_features, "out_features")
        dtype = default_floating_dtype() if dtype is None else dtype
        wkey, bkey = jr.split(key, 2)
        i, o = size_as_int(in_features), size_as_int(out_features)
        weight = canonicalize_initializer(weight_init)(wkey, (i, o), i, dtype)
        self.weight = weight if weight_wrap is None else weight_wrap(weight)
        if use_bias:
            bias = canonicalize_initializer(bias_init)(bkey, (o,), i, dtype)
            self.bias = bias if bias_wrap is None else bias_wrap(bias)
        else:
            self.bias = None
        self.in_features = static_size(in_features)
        self.out_features = static_size(out_features)
        self.use_bias = use_bias

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(in_features,)` (leading batch axes allowed) or
          `()` for a `"scalar"` input (use `jax.vmap` for batches).
        - `key`: ignored. (Keyword only argument.)

        **Returns:** an array of shape `(out_features,)`, or `()` for `"scalar"`.

        Raises `ContainsUnwrappablesError` if the layer still holds wrappers (call
        `klax.finalize` first) and `ValueError` if `x` has the wrong shape.
        """
        del key
        check_finalized(self)
        x = _as_input(x, self.in_features, "x")
        y = x @ self.weight  # pyright: ignore[reportOperatorIssue]
        return _with_bias(y, self.bias, self.out_features)  # pyright: ignore[reportArgumentType]


def _per_input(
    value: Any, n: int, name: str, is_single: Callable[[Any], bool]
) -> tuple:
    if is_single(value):
        return (value,) * n
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(
            f"{name} must be a single entry or a list/tuple of {n} entries, "
            f"but got {value!r}."
        )
    if len(value) != n:
        raise ValueError(
            f"The length of the {name} is unequal to the length of in_features. "
            f"Expected length {n} but is {len(value)}."
        )
    return tuple(value)


class InputSplitLinear(eqx.Module):
    """A linear map of several inputs: `y = x_1 @ W_1 + ... + x_n @ W_n + b`.

    Each input has its own weight, so each can get its own initializer and
    wrapper, e.g. non-negative weights for the inputs a network must be
    non-decreasing in and free weights for the others.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> layer = klax.nn.InputSplitLinear(
        ...     (3, "scalar"), 2, jax.nn.initializers.he_normal(),
        ...     weight_wraps=[klax.NonNegative, None], key=jax.random.key(0))
        >>> klax.finalize(layer)(jnp.ones(3), 1.0).shape
        (2,)
    """

    weights: tuple[Array | Unwrappable[Array], ...]
    bias: Array | Unwrappable[Array] | None
    in_features: tuple[Size, ...] = eqx.field(static=True)
    out_features: Size = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)
    _num_inputs: int

    def __init__(
        self,
        in_features: Sequence[Size],
        out_features: Size,
        weight_inits: Sequence[SupportedInitializer] | SupportedInitializer,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        use_bias: bool = True,
        weight_wraps: Sequence[Wrap | None] | Wrap | None = None,
        bias_wrap: Wrap | None = None,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `in_features`: a list/tuple with the size of each input (ints or
          `"scalar"`).
        - `out_features`: output size (int or `"scalar"`).
        - `weight_inits`: one initializer for all weights, or a list/tuple with
          one per input. Weight `k` receives `fan_in = in_features[k]`.
        - `bias_init`: initializer of the bias; it receives the total input size
          as `fan_in`.
        - `use_bias`: whether to add a bias.
        - `weight_wraps`: `None`, one wrapper for all weights, or a list/tuple
          with one wrapper (or `None`) per input.
        - `bias_wrap`: optional wrapper of the bias.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        if isinstance(in_features, str) or not isinstance(in_features, Sequence):
            raise TypeError(
                "in_features must be a list/tuple of input sizes, e.g. (3, 'scalar'), "
                f"but got {in_features!r}."
            )
        n = len(in_features)
        if n == 0:
            raise ValueError("in_features must name at least one input, but is empty.")
        for k, size in enumerate(in_features):
            check_size(size, f"in_features[{k}]")
        check_size(out_features, "out_features")
        inits = _per_input(weight_inits, n, "weight_inits", callable)
        wraps = _per_input(
            weight_wraps, n, "weight_wraps", lambda w: w is None or callable(w)
        )
        dtype = default_floating_dtype() if dtype is None else dtype
        key, bkey = jr.split(key, 2)
        wkeys = jr.split(key, n)
        sizes = [size_as_int(s) for s in in_features]
        o = size_as_int(out_features)
        weights = []
        for init, wrap, wkey, i in zip(inits, wraps, wkeys, sizes, strict=True):
            weight = canonicalize_initializer(init)(wkey, (i, o), i, dtype)
            weights.append(weight if wrap is None else wrap(weight))
        self.weights = tuple(weights)
        if use_bias:
            bias = canonicalize_initializer(bias_init)(bkey, (o,), sum(sizes), dtype)
            self.bias = bias if bias_wrap is None else bias_wrap(bias)
        else:
            self.bias = None
        self.in_features = tuple(static_size(s) for s in in_features)
        self.out_features = static_size(out_features)
        self.use_bias = use_bias
        self._num_inputs = n

    def __call__(self, *xs: ArrayLike, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `xs`: the n inputs; input k has shape `(in_features[k],)` (the same
          leading batch axes allowed on all) or `()` for a `"scalar"` size.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** an array of shape `(out_features,)`, or `()` for `"scalar"`.

        Raises `ContainsUnwrappablesError` if the layer still holds wrappers (call
        `klax.finalize` first) and `ValueError` for a wrong number of inputs or an
        input of the wrong shape.
        """
        del key
        check_finalized(self)
        n = len(self.in_features)
        if len(xs) != n:
            raise ValueError(
                f"Number of call arguments ({len(xs)}) does not match the number "
                f"of inputs ({n})."
            )
        y = None
        for k, (x, size, weight) in enumerate(
            zip(xs, self.in_features, self.weights, strict=True)
        ):
            term = _as_input(x, size, f"Input {k}") @ weight  # pyright: ignore[reportOperatorIssue]
            y = term if y is None else y + term
        return _with_bias(y, self.bias, self.out_features)  # pyright: ignore[reportArgumentType]
