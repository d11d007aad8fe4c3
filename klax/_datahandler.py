"""Data handling: batch axes, minibatch generators and train/test splits.

Data is any pytree. Which axis of each array indexes the samples is given by
`batch_axes`, a pytree that is a *prefix* of the data: its leaves are ints (the
batch axis of every array below) or `None` (nothing below is batched). Only
arrays (JAX or NumPy, see `eqx.is_array`) are ever batched; Python numbers,
strings and other objects are passed through untouched.
"""

import functools
import operator
import warnings
from collections.abc import Generator, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import PRNGKeyArray, PyTree

T = TypeVar("T")


def _is_none(x: Any) -> bool:
    return x is None


def _check_axis(axis: Any) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool):
        raise TypeError(
            f"The leaves of batch_axes must be ints or None; got the bool {axis!r}."
        )
    try:
        return operator.index(axis)
    except TypeError:
        raise TypeError(
            "The leaves of batch_axes must be ints (the batch axis) or None (not "
            f"batched); got {axis!r} of type {type(axis).__name__}."
        ) from None


def broadcast_and_get_size(data: PyTree, batch_axes: PyTree) -> tuple[PyTree, int]:
    """Broadcast `batch_axes` to the structure of `data` and find the data size.

    **Arguments:**

    - `data`: a pytree of arrays (and possibly other leaves).
    - `batch_axes`: a prefix of `data` whose leaves are ints or `None`.

    **Returns:**

    `(full_batch_axes, dataset_size)`: a pytree with the structure of `data`
    holding, for each leaf, its batch axis or `None` (non-array leaves always
    get `None`; `None` leaves must be read with `is_leaf=lambda x: x is None`),
    and the common length of all batched axes (1 if nothing is batched).

    **Raises:**

    `ValueError` if `batch_axes` is not a prefix of `data`, if a batch axis is
    out of range for its array, or if the batched arrays differ in length;
    `TypeError` if a leaf of `batch_axes` is neither an int nor `None`.
    """
    if data is None:
        jax.tree.map(_check_axis, batch_axes, is_leaf=_is_none)
        return None, 1

    def broadcast(axis, subtree):
        axis = _check_axis(axis)
        return jax.tree.map(lambda x: axis if eqx.is_array(x) else None, subtree)

    try:
        full_axes = jax.tree.map(broadcast, batch_axes, data, is_leaf=_is_none)
    except ValueError as err:
        raise ValueError(
            "batch_axes must be a prefix of data. Give one int or None per "
            "subtree of data (e.g. batch_axes=(0, None) for data=(x, y)). "
            f"Details: {err}"
        ) from None

    sizes = []

    def record(axis, leaf):
        if axis is None:
            return
        shape = jnp.shape(leaf)
        if not -len(shape) <= axis < len(shape):
            raise ValueError(
                f"Batch axis {axis} is out of range for an array of shape {shape} "
                f"(ndim {len(shape)})."
            )
        sizes.append(shape[axis])

    jax.tree.map(record, full_axes, data, is_leaf=_is_none)
    if not sizes:
        return full_axes, 1
    if any(size != sizes[0] for size in sizes):
        raise ValueError(
            f"All batched arrays must have equal batch sizes. Got sizes {sizes}."
        )
    return full_axes, int(sizes[0])


@runtime_checkable
class Batcher(Protocol):
    """What [`klax.fit`][] and [`klax.BatchMetric`][] accept as `batcher`.

    Any callable `batcher(data, batch_size, batch_axes, *, key)` that returns a
    generator of batches (each with the structure of `data`) qualifies;
    [`klax.batch_data`][] is the default.
    """

    def __call__(
        self,
        data: PyTree,
        batch_size: int,
        batch_axes: PyTree,
        *,
        key: PRNGKeyArray,
    ) -> Generator[PyTree, None, None]: ...


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool):
        raise TypeError(f"batch_size must be a positive int; got {batch_size!r}.")
    try:
        size = operator.index(batch_size)
    except TypeError:
        raise TypeError(
            f"batch_size must be a positive int; got {batch_size!r} of type "
            f"{type(batch_size).__name__}."
        ) from None
    if size < 1:
        raise ValueError(f"batch_size must be at least 1; got batch_size={size}.")
    return size


@functools.partial(jax.jit, static_argnums=1)
def _epoch_permutation(key: PRNGKeyArray, n: int) -> tuple[jax.Array, PRNGKeyArray]:
    # One epoch of the key schedule, compiled once per (n, key kind).
    perm = jr.permutation(key, jnp.arange(n))
    (key,) = jr.split(key, 1)
    return perm, key


def _take(leaf: Any, indices: Any, axis: int) -> Any:
    if isinstance(leaf, np.ndarray | np.generic):
        return np.take(leaf, indices, axis=axis)
    return jnp.take(leaf, indices, axis=axis)


def batch_data(
    data: T,
    batch_size: int,
    batch_axes: PyTree = 0,
    convert_to_numpy: bool = True,
    *,
    key: PRNGKeyArray,
) -> Generator[T, None, None]:
    """Yield random minibatches of `data`, forever, epoch after epoch.

    Each epoch draws a permutation of the `n` samples without replacement and
    yields consecutive slices of `batch_size` samples; an incomplete remainder is
    dropped and the next epoch reshuffles. The key schedule is fixed: each epoch
    uses `perm = jr.permutation(key, jnp.arange(n))`, then `(key,) =
    jr.split(key, 1)`. A dataset smaller than `batch_size` gives batches of all
    `n` samples.

    This is a generator function: calling it does no work, and invalid input
    (see the errors below) raises when the first batch is requested.

    **Arguments:**

    - `data`: a pytree of arrays; `None` yields `None` forever.
    - `batch_size`: the number of samples per batch (an int >= 1).
    - `batch_axes`: a prefix of `data` with ints (batch axis) or `None` (not
      batched) as leaves. Defaults to 0.
    - `convert_to_numpy`: if True, batched arrays are turned into NumPy arrays
      once, and batches hold NumPy arrays (fast slicing on the host).
    - `key`: a JAX PRNG key (`jr.key` or `jr.PRNGKey`). (Keyword only argument.)

    **Yields:**

    Batches with the structure of `data`. Batched arrays are indexed along their
    batch axis; unbatched leaves are the identical objects of `data`.

    **Raises:**

    `ValueError` for `batch_size < 1` and for the `batch_axes` errors of
    `broadcast_and_get_size`; `TypeError` for a non-integer `batch_size`.

    Example:
        >>> import jax.random as jr
        >>> import numpy as np
        >>> import klax
        >>> x, y = np.arange(10.0), np.arange(10.0) ** 2
        >>> batches = klax.batch_data((x, y), 4, key=jr.key(0))
        >>> xb, yb = next(batches)
        >>> xb.shape, bool(np.all(yb == xb**2))
        ((4,), True)
    """
    batch_size = _check_batch_size(batch_size)
    full_axes, n = broadcast_and_get_size(data, batch_axes)
    batch_size = min(batch_size, n)

    if data is None or all(
        axis is None for axis in jax.tree.leaves(full_axes, is_leaf=_is_none)
    ):
        # Nothing to batch: every batch is the data itself (a fresh container
        # holding the identical leaves), so skip drawing permutations.
        while True:
            yield jax.tree.map(lambda x: x, data)

    if convert_to_numpy:
        data = jax.tree.map(
            lambda axis, x: x if axis is None else np.asarray(x),
            full_axes,
            data,
            is_leaf=_is_none,
        )

    while True:
        perm, key = _epoch_permutation(key, n)
        perm = np.asarray(perm)
        start, end = 0, batch_size
        while end <= n:
            indices = perm[start:end]
            yield jax.tree.map(
                lambda axis, x: x if axis is None else _take(x, indices, axis),
                full_axes,
                data,
                is_leaf=_is_none,
            )
            start, end = end, end + batch_size


def split_data(
    data: T,
    proportions: Sequence[float],
    batch_axes: PyTree = 0,
    *,
    key: PRNGKeyArray,
) -> tuple[T, ...]:
    """Split `data` randomly into subsets with the given relative sizes.

    The samples are permuted with `jr.permutation(key, jnp.arange(n))` and cut
    at `round(cumsum(p[:-1]) * n)` for the normalised proportions `p` (rounding
    half to even). An empty subset gives a `UserWarning`.

    **Arguments:**

    - `data`: a pytree of arrays.
    - `proportions`: non-negative relative sizes, e.g. `(0.8, 0.2)` or
      `(80, 20)`; they need not sum to 1, but not all may be zero.
    - `batch_axes`: a prefix of `data` with ints (batch axis) or `None` (not
      batched) as leaves. Defaults to 0.
    - `key`: a JAX PRNG key (`jr.key` or `jr.PRNGKey`). (Keyword only argument.)

    **Returns:**

    A tuple with one subset per proportion. Each has the structure of `data`;
    batched arrays become JAX arrays holding the subset's samples (taken along
    their batch axis), other leaves are unchanged.

    Example:
        >>> import jax.random as jr
        >>> import numpy as np
        >>> import klax
        >>> train, test = klax.split_data(np.arange(10.0), (0.8, 0.2), key=jr.key(0))
        >>> train.shape, test.shape
        ((8,), (2,))
    """
    # Proportions are concrete numbers: check them eagerly, also inside jit.
    with jax.ensure_compile_time_eval():
        try:
            props = jnp.array(proportions, dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(
                "`klax.split_data(proportions=...)` must be a 1D sequence of "
                f"non-negative numbers; got {proportions!r}."
            ) from err
        if props.ndim != 1:
            raise ValueError(
                "Proportions must be a 1D Sequence. Got an array of shape "
                f"{props.shape}."
            )
        if props.size == 0:
            raise ValueError("Proportions must contain at least one entry; got none.")
        if not bool(jnp.all(jnp.isfinite(props))):
            raise ValueError(f"Proportions must be finite; got {proportions!r}.")
        if bool(jnp.any(props < 0)):
            raise ValueError(f"Proportions must be non-negative. Got {proportions!r}.")
        total = jnp.sum(props)
        if not bool(total > 0):
            raise ValueError(
                f"Proportions must not all be zero (nothing to split by); got "
                f"{proportions!r}."
            )
        props = props / total

    full_axes, n = broadcast_and_get_size(data, batch_axes)
    perm, _ = _epoch_permutation(key, n)  # = jr.permutation(key, jnp.arange(n))
    with jax.ensure_compile_time_eval():
        points = jnp.round(jnp.cumsum(props[:-1]) * n).astype(int)
        points = [int(p) for p in np.asarray(points)]
    sections = jnp.split(perm, points)
    if any(section.size == 0 for section in sections):
        warnings.warn(
            "Proportions result in one or more empty subsets.",
            UserWarning,
            stacklevel=2,
        )

    def subset(section):
        return jax.tree.map(
            lambda axis, x: x if axis is None else jnp.take(x, section, axis=axis),
            full_axes,
            data,
            is_leaf=_is_none,
        )

    return tuple(subset(section) for section in sections)
