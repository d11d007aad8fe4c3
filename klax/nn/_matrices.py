r"""Matrix-valued functions with structure by construction.

Each module maps an unbatched input (shape `(in_size,)` or `()`) to an array of
a fixed `shape`; the leading entries of `shape` are stack dimensions and the
last two the matrix dimensions. The `Constant*` variants ignore their input.
Use `jax.vmap` for batches.

- [`Matrix`][klax.nn.Matrix], [`ConstantMatrix`][klax.nn.ConstantMatrix]: no
  structure.
- [`SkewSymmetricMatrix`][klax.nn.SkewSymmetricMatrix],
  [`ConstantSkewSymmetricMatrix`][klax.nn.ConstantSkewSymmetricMatrix]:
  $A^\top = -A$.
- [`SPDMatrix`][klax.nn.SPDMatrix], [`ConstantSPDMatrix`][klax.nn.ConstantSPDMatrix]:
  $A = B \bar B^\top + \epsilon I$, Hermitian with eigenvalues $\geq \epsilon$.
"""

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._initializers import SupportedInitializer, canonicalize_initializer
from .._misc import check_real, check_size, default_floating_dtype
from .._wrappers import SkewSymmetric, Unwrappable, check_finalized
from ._activations import batch_shape, identity
from ._mlp import MLP

Size = int | Literal["scalar"]
# Default initializers, built once (they are stateless).
_he_normal = jax.nn.initializers.he_normal()

_default_constant_init = jax.nn.initializers.variance_scaling(
    scale=1, mode="fan_avg", distribution="normal"
)


def _check_shape(shape: Any, owner: str) -> tuple[int, ...]:
    """Normalise `shape`: an int `N` means `(N, N)`; a sequence needs >= 2 entries."""
    if isinstance(shape, str):
        raise TypeError(
            f"`{owner}(shape=...)` must be an int N (meaning (N, N)) or a "
            f"sequence of at least two ints; got shape={shape!r}."
        )
    if isinstance(shape, Sequence):
        if len(shape) < 2:
            raise ValueError(
                f"`{owner}(shape=...)` must have at least two dimensions (..., N, M); "
                f"got shape={shape!r}. Pass an int N for an N x N matrix."
            )
        dims = tuple(shape)
    else:
        dims = (shape, shape)
    for k, dim in enumerate(dims):
        if dim == "scalar":
            raise ValueError(
                f"`{owner}(shape=...)` entries must be non-negative ints; "
                f"got shape={shape!r}."
            )
        check_size(dim, f"`{owner}(shape=...)` entry {k}")
    return tuple(operator.index(d) for d in dims)


def _check_square(shape: tuple[int, ...], owner: str, kind: str) -> None:
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"The last two dimensions in shape must be equal for {kind} matrices. "
            f"`{owner}` got shape={shape}."
        )


def _check_epsilon(epsilon: Any, owner: str) -> float:
    hint = "It is the lower bound of the eigenvalues."
    return check_real(epsilon, f"`{owner}(epsilon=...)`", hint)


def _check_input(x: ArrayLike, mlp: MLP, owner: str) -> None:
    if batch_shape(x, mlp.in_size, "x", owner) != ():
        raise ValueError(
            f"`{owner}` expects an unbatched x of shape ({mlp.in_size},); got x of "
            f"shape {jnp.shape(x)}. Use jax.vmap for batches."
        )


def _spd(b: Array, epsilon: float) -> Array:
    """`B @ conj(B).mT + epsilon * I`, with `I` in the dtype of the result."""
    a = b @ jnp.conj(b).mT
    eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
    return a + epsilon * eye


class Matrix(eqx.Module):
    """A matrix-valued function: an MLP whose output is reshaped to `shape`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> m = klax.nn.Matrix(4, (2, 3), [8], key=jax.random.key(0))
        >>> m(jnp.ones(4)).shape
        (2, 3)
    """

    mlp: MLP
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_size: Size,
        shape: int | Sequence[int],
        width_sizes: Sequence[int],
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `in_size`: input size (int, or `"scalar"` for a 0-d input).
        - `shape`: output shape: an int `N` for `(N, N)`, or a sequence
          `(..., N, M)` of at least two ints (leading entries stack matrices).
        - `width_sizes`, `weight_init`, `bias_init`, `activation`,
          `final_activation`, `use_bias`, `use_final_bias`, `dtype`: passed to
          the underlying [`klax.nn.MLP`][] with `prod(shape)` outputs.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        self.shape = _check_shape(shape, "klax.nn.Matrix")
        self.mlp = MLP(
            in_size,
            math.prod(self.shape),
            width_sizes,
            weight_init,
            bias_init,
            activation,
            final_activation,
            use_bias,
            use_final_bias,
            dtype=dtype,
            key=key,
        )

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(in_size,)`, or `()` for `"scalar"`.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** an array of shape `shape`.
        """
        del key
        _check_input(x, self.mlp, "klax.nn.Matrix")
        return self.mlp(x).reshape(self.shape)


class ConstantMatrix(eqx.Module):
    """A trainable constant array of shape `shape`; the input is ignored.

    Example:
        >>> import jax
        >>> import klax
        >>> m = klax.nn.ConstantMatrix(3, key=jax.random.key(0))
        >>> m(None).shape
        (3, 3)
    """

    array: Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        init: SupportedInitializer = _default_constant_init,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `shape`: an int `N` for `(N, N)`, or a sequence `(..., N, M)`.
        - `init`: initializer of the array; it receives `fan_in = shape[-1]`.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        self.shape = _check_shape(shape, "klax.nn.ConstantMatrix")
        dtype = default_floating_dtype() if dtype is None else dtype
        self.array = canonicalize_initializer(init)(
            key, self.shape, fan_in=self.shape[-1], dtype=dtype
        )

    def __call__(self, x: Any, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: ignored (any value).
        - `key`: ignored. (Keyword only argument.)

        **Returns:** the stored array, of shape `shape`.
        """
        del x, key
        check_finalized(self)
        return self.array


class SkewSymmetricMatrix(eqx.Module):
    r"""A skew-symmetric matrix-valued function: $A(x) = M(x) - M(x)^\top$.

    $M$ is an MLP output reshaped to `shape`; the transpose acts on the last two
    axes. (Unlike [`klax.SkewSymmetric`][], there is no factor $\frac12$.)

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> m = klax.nn.SkewSymmetricMatrix(2, 3, [8], key=jax.random.key(0))
        >>> a = m(jnp.ones(2))
        >>> bool((a == -a.T).all())
        True
    """

    mlp: MLP
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_size: Size,
        shape: int | Sequence[int],
        width_sizes: Sequence[int],
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:** as for [`klax.nn.Matrix`][]; the last two entries of
        `shape` must be equal.
        """
        owner = "klax.nn.SkewSymmetricMatrix"
        self.shape = _check_shape(shape, owner)
        _check_square(self.shape, owner, "skew-symmetric")
        self.mlp = MLP(
            in_size,
            math.prod(self.shape),
            width_sizes,
            weight_init,
            bias_init,
            activation,
            final_activation,
            use_bias,
            use_final_bias,
            dtype=dtype,
            key=key,
        )

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(in_size,)`, or `()` for `"scalar"`.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** a skew-symmetric array of shape `shape`.
        """
        del key
        _check_input(x, self.mlp, "klax.nn.SkewSymmetricMatrix")
        m = self.mlp(x).reshape(self.shape)
        return m - m.mT


class ConstantSkewSymmetricMatrix(eqx.Module):
    r"""A trainable constant skew-symmetric array; the input is ignored.

    The array is stored in a [`klax.SkewSymmetric`][] wrapper, which represents
    $\frac12 (A - A^\top)$; call [`klax.finalize`][] before evaluating.

    Example:
        >>> import jax
        >>> import klax
        >>> m = klax.finalize(klax.nn.ConstantSkewSymmetricMatrix(
        ...     2, key=jax.random.key(0)))
        >>> a = m(None)
        >>> bool((a == -a.T).all())
        True
    """

    array: Array | Unwrappable[Array]
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        init: SupportedInitializer = _default_constant_init,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:** as for [`klax.nn.ConstantMatrix`][]; the last two
        entries of `shape` must be equal.
        """
        self.shape = _check_shape(shape, "klax.nn.ConstantSkewSymmetricMatrix")
        dtype = default_floating_dtype() if dtype is None else dtype
        array = canonicalize_initializer(init)(
            key, self.shape, fan_in=self.shape[-1], dtype=dtype
        )
        self.array = SkewSymmetric(array)

    def __call__(self, x: Any, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: ignored (any value).
        - `key`: ignored. (Keyword only argument.)

        **Returns:** the skew-symmetric array, of shape `shape`.

        **Raises:** `klax.ContainsUnwrappablesError` if the module was not
        finalized.
        """
        del x, key
        check_finalized(self)
        return self.array  # pyright: ignore[reportReturnType]


class SPDMatrix(eqx.Module):
    r"""A symmetric positive definite matrix-valued function.

    $A(x) = B(x) \bar B(x)^\top + \epsilon I$ with $B$ an MLP output reshaped to
    `shape` (matrix products over the last two axes). $A$ is Hermitian and its
    eigenvalues are at least $\epsilon$.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> m = klax.nn.SPDMatrix(2, 3, [8], key=jax.random.key(0))
        >>> bool((jnp.linalg.eigvalsh(m(jnp.ones(2))) > 0).all())
        True
    """

    mlp: MLP
    shape: tuple[int, ...] = eqx.field(static=True)
    epsilon: float = eqx.field(static=True)

    def __init__(
        self,
        in_size: Size,
        shape: int | Sequence[int],
        width_sizes: Sequence[int],
        epsilon: float = 1e-6,
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:** as for [`klax.nn.Matrix`][] (the last two entries of
        `shape` must be equal), plus

        - `epsilon`: lower bound of the eigenvalues (a non-negative float).
        """
        owner = "klax.nn.SPDMatrix"
        self.shape = _check_shape(shape, owner)
        _check_square(self.shape, owner, "symmetric")
        self.epsilon = _check_epsilon(epsilon, owner)
        self.mlp = MLP(
            in_size,
            math.prod(self.shape),
            width_sizes,
            weight_init,
            bias_init,
            activation,
            final_activation,
            use_bias,
            use_final_bias,
            dtype=dtype,
            key=key,
        )

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(in_size,)`, or `()` for `"scalar"`.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** a Hermitian positive definite array of shape `shape`.
        """
        del key
        _check_input(x, self.mlp, "klax.nn.SPDMatrix")
        return _spd(self.mlp(x).reshape(self.shape), self.epsilon)


class ConstantSPDMatrix(eqx.Module):
    r"""A trainable constant symmetric positive definite array; input ignored.

    Returns $B \bar B^\top + \epsilon I$ for the stored array $B$.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> m = klax.nn.ConstantSPDMatrix(3, key=jax.random.key(0))
        >>> bool((jnp.linalg.eigvalsh(m(None)) > 0).all())
        True
    """

    b_matrix: Array
    shape: tuple[int, ...] = eqx.field(static=True)
    epsilon: float = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        epsilon: float = 1e-6,
        init: SupportedInitializer = _default_constant_init,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:** as for [`klax.nn.ConstantMatrix`][] (the last two
        entries of `shape` must be equal), plus

        - `epsilon`: lower bound of the eigenvalues (a non-negative float).
        """
        owner = "klax.nn.ConstantSPDMatrix"
        self.shape = _check_shape(shape, owner)
        _check_square(self.shape, owner, "symmetric")
        self.epsilon = _check_epsilon(epsilon, owner)
        dtype = default_floating_dtype() if dtype is None else dtype
        self.b_matrix = canonicalize_initializer(init)(
            key, self.shape, fan_in=self.shape[-1], dtype=dtype
        )

    def __call__(self, x: Any, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: ignored (any value).
        - `key`: ignored. (Keyword only argument.)

        **Returns:** a Hermitian positive definite array of shape `shape`.
        """
        del x, key
        check_finalized(self)
        return _spd(self.b_matrix, self.epsilon)
