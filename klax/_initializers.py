"""Initializers that may depend on the number of input features (`fan_in`)."""

import functools
import inspect
import math
from typing import Any, Protocol, TypeAlias, cast, runtime_checkable

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array

# Constants of Hoedt & Klambauer (2023), "Principled weight initialisation for
# input-convex neural networks" (see INIT_PAPER.md).
_MEAN_SQ_NUMERATOR = 3.440115731272907
_FAN_IN_SHIFT = 1.3450928843923602
_BIAS_SQ_FACTOR = 0.5475114234402735


@runtime_checkable
class Initializer(Protocol):
    """Protocol for initializers that receive the number of input features.

    A generalisation of `jax.nn.initializers.Initializer`: some bias schemes
    (e.g. [`klax.hoedt_bias`][]) depend on the number of input features
    `fan_in`, which cannot be read off the shape of a bias vector, so klax
    hands it to the initializer explicitly. Any JAX initializer can be turned
    into one with [`klax.canonicalize_initializer`][].
    """

    def __call__(
        self, key: Any, shape: Any, fan_in: int, dtype: Any = jnp.float_
    ) -> Array:
        """Return an array of `shape` and `dtype` for a layer with `fan_in` inputs."""
        ...


SupportedInitializer: TypeAlias = Initializer | jax.nn.initializers.Initializer


def canonicalize_initializer(init: SupportedInitializer) -> Initializer:
    """Turn any supported initializer into a klax [`Initializer`][klax.Initializer].

    An initializer with a parameter named `fan_in` is returned unchanged.
    Otherwise it is wrapped in a function with the klax signature that drops
    `fan_in` and calls `init(key, shape, dtype)`.

    Example:
        >>> import jax
        >>> import klax
        >>> init = klax.canonicalize_initializer(jax.nn.initializers.ones)
        >>> init(jax.random.key(0), (2, 3), 2).shape
        (2, 3)

    **Raises:**

    `TypeError` if `init` is not callable or its signature cannot be inspected.
    """
    try:
        signature = inspect.signature(init)
    except (ValueError, TypeError) as error:
        raise TypeError(
            f"Cannot inspect this initializer ({init!r}): klax needs its call "
            "signature to know whether it takes `fan_in`. Pass a function or a "
            "`jax.nn.initializers` initializer, or wrap it in a Python function "
            "`(key, shape, dtype)`."
        ) from error
    if "fan_in" in signature.parameters:
        return init  # pyright: ignore[reportReturnType]

    jax_init = cast(jax.nn.initializers.Initializer, init)

    def wrapped(key, shape, fan_in, dtype=jnp.float_):
        del fan_in
        return jax_init(key, shape, jax.dtypes.canonicalize_dtype(dtype))

    # `functools.wraps` sets `__wrapped__`, through which `inspect.signature` would
    # report the signature of `init` (without `fan_in`). Pin the klax signature so
    # that canonicalizing again returns this function unchanged instead of
    # wrapping it a second time (which would drop the requested dtype).
    klax_signature = inspect.signature(wrapped)
    wrapped = functools.wraps(jax_init)(wrapped)
    wrapped.__signature__ = klax_signature  # pyright: ignore[reportAttributeAccessIssue]
    return wrapped


@functools.partial(jax.jit, static_argnums=(3, 4))
def _lognormal(key: Any, mu: float, sigma: float, shape: tuple, dtype: Any) -> Array:
    # Jitted so that building a layer compiles one small program per weight shape
    # instead of one per operation; `mu` and `sigma` are weakly typed scalars and
    # never promote low-precision samples.
    eps = jr.normal(key, shape, dtype)
    return jnp.exp(mu + sigma * eps).astype(dtype)


def hoedt_normal(
    in_axis: int = -2, dtype: Any = jnp.float_
) -> jax.nn.initializers.Initializer:
    """Log-normal initializer for weights constrained to be non-negative.

    With `n = shape[in_axis]` inputs, the samples `w = exp(mu + s * eps)`,
    `eps ~ N(0, 1)`, have mean `sqrt(3.4401 / (n (1.3451 + n)))` and variance
    `1 / n`; these moments keep the signal of a ReLU network with non-negative
    weights at a stable scale (Hoedt & Klambauer, 2023). Pair it with
    [`klax.hoedt_bias`][] for the biases of the same layers.

    **Arguments:**

    - `in_axis`: the axis of the weight array that counts the inputs.
    - `dtype`: the default dtype of the samples.

    **Returns:**

    A JAX-style initializer `(key, shape, dtype=dtype) -> Array`. It raises
    `ValueError` if `shape` has no axis `in_axis`, and returns an empty array
    when `shape[in_axis] == 0`.

    Example:
        >>> import jax
        >>> import klax
        >>> w = klax.hoedt_normal()(jax.random.key(0), (4, 3))
        >>> bool((w > 0).all())
        True
    """

    def init(key, shape, dtype=dtype):
        dtype = jax.dtypes.canonicalize_dtype(dtype)
        shape = tuple(shape)
        if not -len(shape) <= in_axis < len(shape):
            raise ValueError(
                f"hoedt_normal(in_axis={in_axis}) needs a weight shape with an axis "
                f"{in_axis} that counts the inputs, but got shape {shape}."
            )
        n = shape[in_axis]
        if n == 0:
            # No inputs: the weight is empty, and the moments are undefined.
            return jnp.zeros(shape, dtype)
        mean_sq = _MEAN_SQ_NUMERATOR / (n * (_FAN_IN_SHIFT + n))
        var = 1.0 / n
        log_second_moment = math.log(var + mean_sq)
        sigma = math.sqrt(log_second_moment - math.log(mean_sq))
        mu = math.log(mean_sq) - 0.5 * log_second_moment
        return _lognormal(key, mu, sigma, shape, dtype)

    return init  # pyright: ignore[reportReturnType]  (no `out_sharding` argument)


def hoedt_bias() -> Initializer:
    """Constant bias initializer for layers with non-negative weights.

    Every entry is `-sqrt(0.5475 * fan_in / (1.3451 + fan_in))`. The negative
    sign cancels the positive mean that non-negative weights give every
    pre-activation (Hoedt & Klambauer, 2023). The key is not used.

    **Returns:**

    A klax [`Initializer`][klax.Initializer] `(key, shape, fan_in, dtype)`.

    Example:
        >>> import jax
        >>> import klax
        >>> klax.hoedt_bias()(jax.random.key(0), (2,), 4)
        Array([-0.6401017, -0.6401017], dtype=float32)
    """

    def init(key, shape, fan_in, dtype=jnp.float_):
        del key
        if fan_in < 0:
            raise ValueError(
                f"hoedt_bias needs a non-negative fan_in, but got fan_in={fan_in}."
            )
        value = -math.sqrt(_BIAS_SQ_FACTOR * fan_in / (_FAN_IN_SHIFT + fan_in))
        return jnp.full(shape, value, dtype=jax.dtypes.canonicalize_dtype(dtype))

    return init
