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
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from ._misc import check_int, describe, invalid, is_none

T = TypeVar("T")


def _check_axis(axis: Any) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not hasattr(axis, "__index__"):
        expected = "ints (the batch axis) or None (not batched)"
        raise invalid(
            "The leaves of batch_axes", expected, describe(axis), "", TypeError
        )
    return operator.index(axis)


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
        jax.tree.map(_check_axis, batch_axes, is_leaf=is_none)
        return None, 1

    def broadcast(axis, subtree):
        axis = _check_axis(axis)
        return jax.tree.map(lambda x: axis if eqx.is_array(x) else None, subtree)

    try:
        full_axes = jax.tree.map(broadcast, batch_axes, data, is_leaf=is_none)
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

    jax.tree.map(record, full_axes, data, is_leaf=is_none)
    if not sizes:
        return full_axes, 1
    if any(size != sizes[0] for size in sizes):
        raise ValueError(
            f"All batched arrays must have equal batch sizes. Got sizes {sizes}."
        )
    return full_axes, int(sizes[0])


def check_like(data: PyTree, other: PyTree, batch_axes: PyTree, name: str) -> None:
    """Check that `other` (e.g. validation data) can be batched like `data`."""
    hint = (
        "Pass data with the structure of the training data (the same containers "
        "and number of arrays, batchable with the same batch_axes)."
    )
    want, got = jax.tree.structure(data), jax.tree.structure(other)
    if want != got:
        raise invalid(
            name, f"structured like the training data, {want}", str(got), hint
        )
    try:
        broadcast_and_get_size(other, batch_axes)
    except ValueError as err:
        raise invalid(name, "batchable with batch_axes", str(err), hint) from None


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


# The key schedule of `batch_data`, shared with the tables that `klax.fit`
# draws on the device: epoch `e` uses the key `k_e` with `k_0 = key`,
# `(k_{e+1},) = jr.split(k_e, 1)`, and the permutation
# `jr.permutation(k_e, jnp.arange(n))`.

# Datasets of at most this many samples are permuted without a sort.
_RANK_MAX = 128
# Bound on the elements of the intermediates of the permutations drawn at once
# (the ranking of small datasets compares every pair of samples of an epoch).
_PERMUTATION_BLOCK_ELEMENTS = 2**22


def _permutation(key: PRNGKeyArray, n: int) -> Int[Array, " n"]:
    """Equals `jr.permutation(key, jnp.arange(n))`, computed faster for small n.

    For `n <= 1625` `jr.permutation` does one round: a stable sort of
    `arange(n)` by 32-bit keys `jr.bits(subkey, (n,), jnp.uint32)` with
    `_, subkey = jr.split(key)`. For small `n` the same order follows from
    ranking by comparisons (O(n^2) vectorised work instead of a sort, which is
    several times slower on CPU).
    """
    index = jnp.arange(n)
    if n < 2 or n > _RANK_MAX:
        return jr.permutation(key, index)
    _, subkey = jr.split(key)
    bits = jr.bits(subkey, (n,), jnp.uint32)
    # before[i, j]: sample j precedes sample i in the sorted order.
    before = (bits[None, :] < bits[:, None]) | (
        (bits[None, :] == bits[:, None]) & (index[None, :] < index[:, None])
    )
    rank = jnp.sum(before, axis=1, dtype=index.dtype)
    return jnp.sum(
        jnp.where(rank[None, :] == index[:, None], index[None, :], 0),
        axis=1,
        dtype=index.dtype,
    )


def epoch_keys(key: PRNGKeyArray, epochs: int) -> tuple[PRNGKeyArray, PRNGKeyArray]:
    """The keys of `epochs` consecutive epochs from `key`, and the next one."""

    def advance(k, _):
        (next_k,) = jr.split(k, 1)
        return next_k, k

    next_key, keys = jax.lax.scan(advance, key, length=epochs)
    return keys, next_key


def permutations(keys: PRNGKeyArray, n: int) -> Int[Array, "... n"]:
    """`jr.permutation(k, jnp.arange(n))` for every key `k` of `keys`.

    Computed a block of keys at a time, so that the intermediates stay small
    however many permutations are drawn.
    """
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    batch_shape = keys.shape if typed else keys.shape[:-1]  # legacy: (..., 2)
    flat = jnp.reshape(keys, (-1, *keys.shape[len(batch_shape) :]))
    work = n * n if n <= _RANK_MAX else n
    block = max(1, min(flat.shape[0], _PERMUTATION_BLOCK_ELEMENTS // work))
    table = jax.lax.map(lambda k: _permutation(k, n), flat, batch_size=block)
    return jnp.reshape(table, (*batch_shape, n))


@functools.partial(jax.jit, static_argnums=1)
def _epoch(key: PRNGKeyArray, n: int) -> tuple[jax.Array, PRNGKeyArray]:
    # One epoch of the key schedule, compiled once per (n, key kind).
    keys, next_key = epoch_keys(key, 1)
    return permutations(keys, n)[0], next_key


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
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    full_axes, n = broadcast_and_get_size(data, batch_axes)
    batch_size = min(batch_size, n)

    if data is None or all(
        axis is None for axis in jax.tree.leaves(full_axes, is_leaf=is_none)
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
            is_leaf=is_none,
        )

    while True:
        perm, key = _epoch(key, n)
        perm = np.asarray(perm)
        start, end = 0, batch_size
        while end <= n:
            indices = perm[start:end]
            yield jax.tree.map(
                lambda axis, x: x if axis is None else _take(x, indices, axis),
                full_axes,
                data,
                is_leaf=is_none,
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
    perm, _ = _epoch(key, n)  # = jr.permutation(key, jnp.arange(n))
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
            is_leaf=is_none,
        )

    return tuple(subset(section) for section in sections)
