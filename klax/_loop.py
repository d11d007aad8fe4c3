"""The compiled training loop behind `make_step`, `run_training_loop` and `fit`.

One update rule, `train_step`, is used everywhere. The host loop (`run_loop`)
calls the callbacks in Python and, in between, runs as many updates as
possible in one compiled call (`_run_chunk`: a `lax.while_loop` with a dynamic
trip count, so chunks of any length share one compilation). Batches come from
a *feeder*:

- `DeviceFeeder` reproduces `klax.batch_data` on the device: the permutations
  of many epochs are drawn at once with the same key schedule, and the loop
  gathers each batch along each leaf's batch axis (no host transfer per step).
  When a batch holds every sample (full-batch training), the batches differ
  only in the order of their samples; the loop then uses the data as stored
  (no permutation, no gather), which changes a loss over the samples only by
  the round-off of the summation order.
- `HostFeeder` drains any iterator of batches, stacks a chunk of them and
  transfers them at once.

Non-finite guard: the fast loop only watches the loss (stopping at the first
non-finite one) and checks the parameters once per chunk. If either check
fails, the chunk is replayed from its inputs with a guarded loop that rejects
the first update whose loss or updated parameters are not finite, and stops
there; the host loop reports the step.
"""

import functools as ft
import operator
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Int, PRNGKeyArray, PyTree, Scalar

from ._callbacks import step_period
from ._datahandler import broadcast_and_get_size
from ._losses import Loss
from ._trainstate import TrainingContext, TrainingState
from ._wrappers import apply

# ---------------------------------------------------------------------------
# The update rule


def with_extra_args(
    optimizer: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    """`optimizer` itself if it accepts extra arguments, else a wrapped copy."""
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        return optimizer
    return optax.with_extra_args_support(optimizer)


def train_step(
    state: TrainingState,
    batch: PyTree,
    loss: Loss,
    optimizer: optax.GradientTransformationExtraArgs,
) -> tuple[TrainingState, Scalar]:
    """One update: gradient, optimizer step, constraints. Returns the loss too.

    The optimizer receives `value`, `grad` and `value_fn` as extra arguments
    (for line searches and value-based methods such as `optax.lbfgs`,
    `optax.polyak_sgd` or `optax.contrib.reduce_on_plateau`). Constraints are
    applied to the updated model with `klax.apply`.
    """
    params, static = eqx.partition(state.model, eqx.is_inexact_array)
    value, grad = loss.value_and_grad(state.model, batch, state.run_state)
    value_fn = jax.tree_util.Partial(
        loss.partitioned_value, static=static, batch=batch, run_state=state.run_state
    )
    updates, opt_state = optimizer.update(
        grad, state.opt_state, params, value=value, grad=grad, value_fn=value_fn
    )
    model = apply(eqx.combine(optax.apply_updates(params, updates), static))
    return TrainingState(model, opt_state, state.run_state, state.step + 1), value


# Status codes of a chunk (why it ended early).
OK, NONFINITE_LOSS, NONFINITE_PARAMS = 0, 1, 2
STOP_REASONS = {
    NONFINITE_LOSS: "non-finite loss",
    NONFINITE_PARAMS: "non-finite parameters",
}


def _all_finite(tree: PyTree) -> Bool[Array, ""]:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return ft.reduce(operator.and_, leaves, jnp.array(True))


# ---------------------------------------------------------------------------
# Samplers: how a compiled chunk gets the batch of its i-th step. A sampler is
# static configuration (an Equinox module without arrays); the arrays it reads
# come in as the chunk's `source`.


# Datasets of at most this many samples are permuted without a sort.
_RANK_MAX = 128


def _epoch_permutation(key: PRNGKeyArray, n: int) -> Int[Array, " n"]:
    """Equals `jr.permutation(key, jnp.arange(n))`, computed faster for small n.

    For `n <= 1625` `jr.permutation` does one round: a stable sort of
    `arange(n)` by 32-bit keys `jr.bits(subkey, (n,), jnp.uint32)` with
    `_, subkey = jr.split(key)`. For small `n` the same order follows from
    ranking by comparisons (O(n^2) vectorised work instead of a sort, which is
    several times slower on CPU). The tests check the equality.
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


# Bound on the elements of the intermediates of the permutations drawn at once
# (the ranking of small datasets compares every pair of samples of an epoch).
_PERMUTATION_BLOCK_ELEMENTS = 2**22


def epoch_keys(key: PRNGKeyArray, epochs: int) -> tuple[PRNGKeyArray, PRNGKeyArray]:
    """`klax.batch_data`'s keys of `epochs` consecutive epochs, and the next one.

    The schedule: `k_0 = key`, `(k_{e+1},) = jr.split(k_e, 1)`.
    """

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
    table = jax.lax.map(lambda k: _epoch_permutation(k, n), flat, batch_size=block)
    return jnp.reshape(table, (*batch_shape, n))


@ft.partial(jax.jit, static_argnums=(1, 2))
def _permutation_table(
    key: PRNGKeyArray, n: int, epochs: int
) -> tuple[Int[Array, "epochs n"], PRNGKeyArray]:
    """The permutations of `epochs` consecutive epochs of `klax.batch_data`.

    Row `e` is `jr.permutation(k_e, jnp.arange(n))` for the key schedule of
    `epoch_keys`; also returns `k_epochs`.
    """
    keys, next_key = epoch_keys(key, epochs)
    return permutations(keys, n), next_key


@jax.jit
def _split_n_times(key: PRNGKeyArray, n: Int[Array, ""]) -> PRNGKeyArray:
    return jax.lax.fori_loop(0, n, lambda _, k: jr.split(k, 1)[0], key)


class _DeviceBatchData(eqx.Module):
    """`klax.batch_data`'s batches, gathered on the device.

    `source = (data_leaves, table, first)`: step `i` uses batch `first + i` of
    the permutation table (row `(first + i) // per_epoch`).
    """

    treedef: Any = eqx.field(static=True)
    axes: tuple[int | None, ...] = eqx.field(static=True)
    n: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)

    def draw(self, source: Any, i: Int[Array, ""]) -> PyTree:
        leaves, table, first = source
        per_epoch = self.n // self.batch_size
        g = first + i
        start = (g // per_epoch, (g % per_epoch) * self.batch_size)
        indices = jax.lax.dynamic_slice(table, start, (1, self.batch_size))[0]
        leaves = [
            x if axis is None else _gather(x, indices, axis)
            for x, axis in zip(leaves, self.axes, strict=True)
        ]
        return jax.tree.unflatten(self.treedef, leaves)


def _gather(x: Array, indices: Int[Array, " b"], axis: int) -> Array:
    """`jnp.take(x, indices, axis)` for indices known to be in range and unique."""
    where = (slice(None),) * (axis % x.ndim) + (indices,)
    return x.at[where].get(mode="promise_in_bounds", unique_indices=True)


class _Constant(eqx.Module):
    """Every batch is `source` itself (nothing is batched)."""

    def draw(self, source: PyTree, i: Int[Array, ""]) -> PyTree:
        del i
        return source


class _Stacked(eqx.Module):
    """Batches stacked along a new leading axis; step `i` takes entry `i`."""

    def draw(self, source: PyTree, i: Int[Array, ""]) -> PyTree:
        stacked, static = source
        batch = jax.tree.map(
            lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), stacked
        )
        return eqx.combine(batch, static)


# ---------------------------------------------------------------------------
# The compiled chunk


@eqx.filter_jit
def _run_chunk(
    state_leaves: list[Any],
    state_treedef: Any,
    sampler: Any,
    source: PyTree,
    num_steps: Int[ArrayLike, ""],
    loss: Loss,
    optimizer: optax.GradientTransformationExtraArgs,
    guarded: bool,
) -> tuple[list[Any], Int[Array, ""], Int[Array, ""], Bool[Array, ""]]:
    """Run up to `num_steps` updates in one `lax.while_loop`.

    Unguarded (the fast path), the loop only watches the loss: it stops after
    the first update whose loss is not finite (that update is applied), and
    checks the parameters once at the end. Guarded (used to replay a chunk in
    which something went wrong), every update whose loss or updated parameters
    are not finite is rejected, and the loop stops there.

    Returns the new state leaves, the number of updates done (applied resp.
    accepted), a status code (`OK`, `NONFINITE_LOSS`, `NONFINITE_PARAMS`) and
    whether the final parameters are finite.
    """
    state = jax.tree.unflatten(state_treedef, state_leaves)
    dynamic, static = eqx.partition(state, eqx.is_array)

    def cond(loop):
        i, status, _ = loop
        return (i < num_steps) & (status == OK)

    def body(loop):
        i, _, dynamic = loop
        old = eqx.combine(dynamic, static)
        new, value = train_step(old, sampler.draw(source, i), loss, optimizer)
        new_dynamic, new_static = eqx.partition(new, eqx.is_array)
        if not eqx.tree_equal(new_static, static):
            raise TypeError(
                "A training step changed the non-array part of the training state "
                "(e.g. the optimizer state holds Python numbers that the update "
                "replaces). Only array leaves may change during training."
            )
        loss_ok = jnp.isfinite(value)
        if not guarded:
            status = jnp.where(loss_ok, OK, NONFINITE_LOSS).astype(jnp.int32)
            return i + 1, status, new_dynamic
        params_ok = _all_finite(eqx.filter(new.model, eqx.is_inexact_array))
        ok = loss_ok & params_ok
        dynamic = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_dynamic, dynamic)
        status = jnp.where(
            loss_ok, jnp.where(params_ok, OK, NONFINITE_PARAMS), NONFINITE_LOSS
        ).astype(jnp.int32)
        return i + ok.astype(i.dtype), status, dynamic

    init = (jnp.array(0, jnp.int32), jnp.array(OK, jnp.int32), dynamic)
    done, status, dynamic = jax.lax.while_loop(cond, body, init)
    state = eqx.combine(dynamic, static)
    finite = _all_finite(eqx.filter(state.model, eqx.is_inexact_array))
    return jax.tree.leaves(state), done, status, finite


def _run_guarded(
    state_leaves: list[Any],
    state_treedef: Any,
    sampler: Any,
    source: PyTree,
    num_steps: int,
    loss: Loss,
    optimizer: optax.GradientTransformationExtraArgs,
) -> tuple[list[Any], int, int]:
    """Run a chunk fast; if anything became non-finite, replay it guarded.

    The replay starts from the same inputs and runs the same updates, so it
    finds the first bad update and returns the state just before it.
    """
    args = (state_leaves, state_treedef, sampler, source)
    # NumPy scalars: traced like arrays, without an eager device op per chunk.
    num = np.int32(num_steps)
    leaves, done, status, finite = _run_chunk(*args, num, loss, optimizer, False)
    done, status, finite = jax.device_get((done, status, finite))
    if status == OK and finite:
        return leaves, int(done), OK
    leaves, done, status, _ = _run_chunk(*args, num, loss, optimizer, True)
    done, status = jax.device_get((done, status))
    return leaves, int(done), int(status)


# ---------------------------------------------------------------------------
# Feeders: the host side of the samplers

# A table of permutations drawn at once on the device covers at least
# _TABLE_STEPS steps (so that long runs are rarely cut into extra chunks at
# table boundaries), within _TABLE_ENTRIES indices (16 MiB of int32).
_TABLE_STEPS = 2**16
_TABLE_ENTRIES = 2**22


def table_epochs(n: int, per_epoch: int, steps: int, members: int = 1) -> int:
    """The number of epochs in one permutation table of `n` samples.

    Enough for `steps` more steps, rounded up to a power of two (few distinct
    table shapes, so few compilations), but at most `_TABLE_STEPS` steps'
    worth and `_TABLE_ENTRIES` indices over all `members`; at least 2.
    """
    wanted = -(-min(steps, _TABLE_STEPS) // per_epoch)
    wanted = 1 << max(wanted - 1, 0).bit_length()
    return max(2, min(wanted, _TABLE_ENTRIES // (members * n)))


class DevicePlan(NamedTuple):
    """How the compiled loop gets `klax.batch_data`'s batches of `data`.

    `leaves`/`treedef`: the data, flattened (arrays on the device); `axes`: the
    batch axis of each leaf; `n`: the number of samples; `batch_size`: capped
    at `n`. `constant`: every batch is the data as stored, because nothing is
    batched or a batch holds every sample (a full batch's order only changes
    the round-off of a loss over the samples; see the module docstring).
    """

    leaves: list[Any]
    treedef: Any
    axes: tuple[int | None, ...]
    n: int
    batch_size: int
    constant: bool


def plan_device_batches(
    data: PyTree, batch_size: int, batch_axes: PyTree, place: Callable = lambda x: x
) -> DevicePlan:
    """The `DevicePlan` of `data`; `place` puts the list of leaves on devices."""
    full_axes, n = broadcast_and_get_size(data, batch_axes)
    batch_size = min(batch_size, n)
    leaves, treedef = jax.tree.flatten(data)
    axes = tuple(treedef.flatten_up_to(full_axes)) if data is not None else ()
    leaves = place([jnp.asarray(x) if eqx.is_array(x) else x for x in leaves])
    constant = all(axis is None for axis in axes) or batch_size == n
    return DevicePlan(leaves, treedef, axes, n, batch_size, constant)


class DeviceFeeder:
    """Runs chunks with the batches `klax.batch_data` would yield, drawn on device.

    The permutations of many epochs are drawn at once into a table (with
    `batch_data`'s key schedule); the compiled loop gathers each batch from the
    data by the table's indices. `offset` batches of the sequence are skipped;
    `steps` is the length of the run (it sizes the tables). Full batches
    (`batch_size >= n`) are the data as stored (see the module docstring).
    """

    def __init__(
        self,
        data: PyTree,
        batch_size: int,
        batch_axes: PyTree,
        key: PRNGKeyArray,
        offset: int,
        steps: int,
    ):
        plan = plan_device_batches(data, batch_size, batch_axes)
        self.exhausted = False
        self.leaves = plan.leaves
        if plan.constant:
            self.sampler: Any = _Constant()
            self.data = jax.tree.unflatten(plan.treedef, plan.leaves)
            return
        n = plan.n
        self.sampler = _DeviceBatchData(plan.treedef, plan.axes, n, plan.batch_size)
        self.per_epoch = n // plan.batch_size
        skipped_epochs, self.position = divmod(offset, self.per_epoch)
        self.epochs = table_epochs(n, self.per_epoch, self.position + steps)
        self.next_key = (
            _split_n_times(key, np.int32(skipped_epochs)) if skipped_epochs else key
        )
        self.table = None

    def run(
        self,
        state_leaves: list[Any],
        state_treedef: Any,
        num_steps: int,
        loss: Loss,
        optimizer: optax.GradientTransformationExtraArgs,
    ) -> tuple[list[Any], int, int]:
        if isinstance(self.sampler, _Constant):
            return _run_guarded(
                state_leaves,
                state_treedef,
                self.sampler,
                self.data,
                num_steps,
                loss,
                optimizer,
            )
        capacity = self.epochs * self.per_epoch
        if self.table is None or self.position >= capacity:
            if self.table is not None:
                self.position -= capacity
            self.table, self.next_key = _permutation_table(
                self.next_key, self.sampler.n, self.epochs
            )
        source = (self.leaves, self.table, np.int32(self.position))
        num_steps = min(num_steps, capacity - self.position)
        leaves, done, status = _run_guarded(
            state_leaves,
            state_treedef,
            self.sampler,
            source,
            num_steps,
            loss,
            optimizer,
        )
        self.position += done
        return leaves, done, status


def _signature(batch: PyTree) -> Any:
    """What must agree for batches to be stacked and share a compilation."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple(
        (jnp.shape(x), x.dtype) if eqx.is_array(x) else ("static", x) for x in leaves
    )


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _stack(batches: list[PyTree], length: int) -> PyTree:
    """Stack `batches` leafwise, padded to `length` by repeating the last one."""
    batches = batches + [batches[-1]] * (length - len(batches))

    def stack(*xs):
        if all(isinstance(x, np.ndarray | np.generic) for x in xs):
            return jnp.asarray(np.stack(xs))
        return jnp.stack(xs)

    arrays = [eqx.filter(b, eqx.is_array) for b in batches]
    return jax.tree.map(stack, *arrays)


# Upper bounds on one stacked chunk of host batches.
_MAX_HOST_CHUNK = 1000
_MAX_HOST_CHUNK_BYTES = 64 * 2**20


class HostFeeder:
    """Runs chunks of batches drawn from `context.batch_generator`, in order.

    The generator is looked up at every draw, so a callback may replace it.
    Consecutive batches that agree in structure, shapes, dtypes and non-array
    leaves are stacked (padded to a fixed length, so that every chunk reuses
    one compilation) and transferred at once; a batch that differs starts the
    next chunk.
    """

    def __init__(self, context: TrainingContext, chunk: int, offset: int = 0):
        self.context = context
        self.chunk = max(1, chunk)
        self.exhausted = False
        self.pending: list[tuple[PyTree]] = []
        for _ in range(offset):
            if self._next() is None:
                break

    def _next(self) -> tuple[PyTree] | None:
        # Batches are wrapped in a 1-tuple: a batch may itself be None.
        if self.pending:
            return self.pending.pop()
        try:
            return (next(self.context.batch_generator),)
        except StopIteration:
            self.exhausted = True
            return None

    def run(
        self,
        state_leaves: list[Any],
        state_treedef: Any,
        num_steps: int,
        loss: Loss,
        optimizer: optax.GradientTransformationExtraArgs,
    ) -> tuple[list[Any], int, int]:
        first = self._next()
        if first is None:
            return state_leaves, 0, OK
        group = [first[0]]
        signature = _signature(group[0])
        length = min(self.chunk, max(1, _MAX_HOST_CHUNK_BYTES // _nbytes(group[0])))
        while len(group) < min(num_steps, length):
            item = self._next()
            if item is None:
                break
            if not _same(_signature(item[0]), signature):
                self.pending.append(item)
                break
            group.append(item[0])
        stacked = _stack(group, length)
        static = eqx.filter(group[0], eqx.is_array, inverse=True)
        return _run_guarded(
            state_leaves,
            state_treedef,
            _Stacked(),
            (stacked, static),
            len(group),
            loss,
            optimizer,
        )


def _nbytes(batch: PyTree) -> int:
    return max(
        1,
        sum(
            int(np.prod(jnp.shape(x))) * x.dtype.itemsize
            for x in jax.tree.leaves(batch)
            if eqx.is_array(x)
        ),
    )


def host_chunk(periods: Sequence[int | None], steps: int) -> int:
    """The number of host batches to stack per chunk (at most the shortest period)."""
    given = [p for p in periods if p is not None]
    return max(1, min([*given, steps, _MAX_HOST_CHUNK]))


# ---------------------------------------------------------------------------
# The host loop


def _next_stop(step: int, periods: Sequence[int | None], steps: int) -> int:
    """The first step after `step` at which some callback must run (or `steps`)."""
    stop = steps
    for period in periods:
        if period is not None:
            stop = min(stop, (step // period + 1) * period)
    return stop


def run_loop(
    context: TrainingContext,
    callbacks: Sequence[Any],
    make_feeder: Callable[[Sequence[int | None]], Any],
) -> None:
    """Run training as `klax.run_training_loop` specifies, fused between callbacks.

    `make_feeder(periods)` builds the feeder once the callbacks' periods are
    known. Sets `context.stop_step` / `context.stop_reason` when the guard
    rejects an update.
    """
    periods = [step_period(callback) for callback in callbacks]
    feeder = make_feeder(periods)
    optimizer = with_extra_args(context.optimizer)
    for callback in callbacks:
        callback.on_training_start(context)
    while True:
        step = int(context.state.step)
        if not isinstance(context.state.step, jax.Array):
            # A callback may set the step to a plain number; the compiled loop
            # carries it as an array.
            context.state.step = jnp.asarray(step, dtype=jnp.int32)
        if step >= context.steps:
            break
        target = _next_stop(step, periods, context.steps)
        leaves, done, status = feeder.run(
            context._state_leaves,
            context._state_treedef,
            target - step,
            context.loss,
            optimizer,
        )
        if done:
            context.update_state(leaves)
        if status != OK:
            context.stop_step = step + done + 1
            context.stop_reason = STOP_REASONS[status]
            break
        if done == 0:  # the batch iterator is exhausted
            break
        new_step = step + done
        stop = False
        for callback, period in zip(callbacks, periods, strict=True):
            if period is not None and new_step % period == 0:
                stop = bool(callback.on_training_step(context)) or stop
        if stop or feeder.exhausted:
            break
    for callback in callbacks:
        callback.on_training_end(context)


def warn_stop(context: TrainingContext, stacklevel: int) -> None:
    """Warn that the non-finite guard ended training early (if it did)."""
    if context.stop_step is None:
        return
    k = context.stop_step
    warnings.warn(
        f"Training stopped at step {k} of {context.steps}: the update produced a "
        f"{context.stop_reason}. It was rejected; the returned model and "
        f"optimizer state are those after step {k - 1}, the last finite ones. "
        "Lower the learning rate, check the data and the loss for NaN/inf, or "
        "clip gradients (e.g. optax.clip_by_global_norm).",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
