"""The one training loop of klax, behind `run_training_loop`, `fit` and `fit_ensemble`.

One update rule, `train_step`, is used everywhere. The host loop (`run_loop`)
calls the callbacks in Python and, in between, runs as many updates as
possible in one compiled call (`_run_chunk`: a `lax.while_loop` with a dynamic
trip count, so chunks of any length share one compilation).

The loop state may carry a leading *member* axis: an ensemble trains its `N`
members with the update vmapped over that axis, and a single model is the same
loop without the vmap. Each member has a health flag; an update is kept only
where the member is healthy and the update's loss and parameters are finite
(`select(healthy & finite(new), new, old)`), so a non-finite update freezes
its member at its last finite state. The loop ends when no member is healthy:
for a single model, at its first non-finite update. A single model first runs
a chunk unguarded (the select and the per-step check of the parameters cost
about a fifth of the time of a small model's update) and replays it guarded
from the same inputs only if something became non-finite.

Batches come from a *feeder*:

- `DeviceFeeder` reproduces `klax.batch_data` on the device: the permutations
  of many epochs (of every member) are drawn at once with `batch_data`'s key
  schedule, and the loop gathers each batch along each leaf's batch axis (no
  host transfer per step). When a batch holds every sample (full-batch
  training), the batches differ only in the order of their samples; the loop
  then uses the data as stored (no permutation, no gather), which changes a
  loss over the samples only by the round-off of the summation order.
- `HostFeeder` drains any iterator of batches (of one batch per member for an
  ensemble), stacks a chunk of them and transfers them at once.
"""

import functools as ft
import operator
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Int, PRNGKeyArray, PyTree, Scalar

from ._callbacks import step_period
from ._datahandler import (
    batch_data,
    broadcast_and_get_size,
    check_like,
    epoch_keys,
    permutations,
)
from ._logging import BatchMetric, History, Metric, MetricLogger
from ._losses import Loss
from ._misc import (
    check_callbacks,
    check_int,
    check_loss_and_optimizer,
    check_member_axis,
    check_opt_state,
    invalid,
)
from ._sharding import (
    BatchShardedLoss,
    along,
    constrain_leading,
    gather,
    replicate,
    replicated,
    resolve_mesh,
    shard_plan,
    split_leading,
)
from ._trainstate import TrainingContext, TrainingState
from ._wrappers import apply

DEFAULT_OPTIMIZER = optax.adam(1e-3)

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


# Why a member was frozen.
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
# come in as the chunk's `shared` part (the same for every member) and `own`
# part (with a member axis, mapped over, if there are members).


class _Table(eqx.Module):
    """`klax.batch_data`'s batches, gathered on the device.

    `shared = (data_leaves, first)`, `own` = the permutation table: step `i`
    uses batch `first + i` of the table (row `(first + i) // per_epoch`).
    """

    treedef: Any = eqx.field(static=True)
    axes: tuple[int | None, ...] = eqx.field(static=True)
    n: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)

    def draw(self, shared: Any, own: Any, i: Int[Array, ""]) -> PyTree:
        leaves, first = shared
        per_epoch = self.n // self.batch_size
        g = first + i
        start = (g // per_epoch, (g % per_epoch) * self.batch_size)
        indices = jax.lax.dynamic_slice(own, start, (1, self.batch_size))[0]
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
    """Every batch is `shared` itself (nothing is batched, or a full batch)."""

    def draw(self, shared: PyTree, own: Any, i: Int[Array, ""]) -> PyTree:
        return shared


class _Stacked(eqx.Module):
    """Host batches: `own` stacked along a leading step axis, `shared` the rest."""

    def draw(self, shared: PyTree, own: PyTree, i: Int[Array, ""]) -> PyTree:
        batch = jax.tree.map(
            lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), own
        )
        return eqx.combine(batch, shared)


# ---------------------------------------------------------------------------
# Members: how the state is laid out


class Layout(eqx.Module):
    """Static layout of a run: whether there is a member axis, and the devices.

    `members`: None (one model) or the number of members. `run_state_axis`: 0
    if every array of the run state has a member axis. `mesh`, `member_axes`:
    the mesh (or None) and its axes the members are split over (or None).
    """

    members: int | None = eqx.field(static=True, default=None)
    run_state_axis: int | None = eqx.field(static=True, default=None)
    mesh: Any = eqx.field(static=True, default=None)
    member_axes: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def place_members(self, tree: PyTree) -> PyTree:
        """Arrays with a member axis on the mesh (split, if members are)."""
        if self.mesh is None:
            return tree
        if self.member_axes is None:
            return replicate(tree, self.mesh)
        return split_leading(tree, self.mesh, self.member_axes)

    def place_shared(self, tree: PyTree) -> PyTree:
        """Arrays every member reads, replicated on the mesh."""
        return tree if self.mesh is None else replicate(tree, self.mesh)

    def map(self, fn: Callable, in_axes: Any = None) -> Callable:
        """`fn` vmapped over the member axis (`fn` itself without members).

        Without `in_axes`, every array of the arguments is mapped over its
        leading axis and non-arrays are passed through (`eqx.filter_vmap`).
        """
        if self.members is None:
            return fn
        if in_axes is None:
            return eqx.filter_vmap(fn)
        return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=self.member_axes)


Health = tuple[Bool[Array, "*N"], Int[Array, "*N"], Int[Array, "*N"]]


@eqx.filter_jit
def _run_chunk(
    state_leaves: list[Any],
    state_treedef: Any,
    layout: Layout,
    sampler: Any,
    shared: Any,
    own: Any,
    health: Health,
    num_steps: Int[ArrayLike, ""],
    loss: Loss,
    optimizer: optax.GradientTransformationExtraArgs,
    guarded: bool,
) -> tuple[list[Any], Int[Array, ""], Health, Bool[Array, ""], Bool[Array, ""]]:
    """Run up to `num_steps` updates (of every member) in one while loop.

    `health = (alive, stop_step, reason)`, per member. Guarded, an update that
    gives a member a non-finite loss or non-finite parameters is rejected and
    freezes the member: it keeps its state from before that update,
    `stop_step` records the step of the rejected update and `reason` why.
    Frozen members still compute (vmapped), but their results are discarded.
    The loop ends early once no member is alive.

    Unguarded (the fast path of a single model), every update is applied; the
    loop only watches the loss, stops after the first non-finite one and
    checks the parameters once at the end. If that chunk was not `clean`, the
    host replays it guarded from the same inputs.

    Returns the new state leaves, the number of updates done (iterations in
    which some member was updated), the new health, whether any member is
    still alive and whether the chunk was clean.
    """
    state = jax.tree.unflatten(state_treedef, state_leaves)
    dynamic, static = eqx.partition((state.model, state.opt_state), eqx.is_array)
    rs_dynamic, rs_static = eqx.partition(state.run_state, eqx.is_array)
    step0 = state.step

    def update(dynamic, own, rs_dynamic, i, step):
        model, opt_state = eqx.combine(dynamic, static)
        run_state = eqx.combine(rs_dynamic, rs_static)
        old = TrainingState(model, opt_state, run_state, step)
        new, value = train_step(old, sampler.draw(shared, own, i), loss, optimizer)
        new_dynamic, new_static = eqx.partition(
            (new.model, new.opt_state), eqx.is_array
        )
        if not eqx.tree_equal(new_static, static):
            raise TypeError(
                "A training step changed the non-array part of the model or "
                "optimizer state (e.g. the optimizer state holds Python numbers "
                "that the update replaces). Only array leaves may change."
            )
        params_ok = jnp.array(True)
        if guarded:
            params_ok = _all_finite(eqx.filter(new.model, eqx.is_inexact_array))
        return new_dynamic, jnp.isfinite(value), params_ok

    own_axis = None if own is None else 0
    update = layout.map(update, (0, own_axis, layout.run_state_axis, None, None))

    def select(mask, new, old):
        def pick(a, b):
            return jnp.where(
                jnp.reshape(mask, mask.shape + (1,) * (a.ndim - mask.ndim)), a, b
            )

        return jax.tree.map(pick, new, old)

    def cond(carry):
        i, _, _, (alive, _, _) = carry
        return (i < num_steps) & jnp.any(alive)

    def body(carry):
        i, done, dynamic, (alive, stop_step, reason) = carry
        step = step0 + done
        new_dynamic, loss_ok, params_ok = update(dynamic, own, rs_dynamic, i, step)
        if not guarded:  # no bookkeeping: a chunk that is not clean is replayed
            return i + 1, done + 1, new_dynamic, (loss_ok, stop_step, reason)
        ok = loss_ok & params_ok
        accept = alive & ok
        dynamic = select(accept, new_dynamic, dynamic)
        if layout.member_axes is not None:
            dynamic = constrain_leading(dynamic, layout.mesh, layout.member_axes)
        failed = alive & ~ok
        stop_step = jnp.where(failed, step + 1, stop_step).astype(stop_step.dtype)
        code = jnp.where(loss_ok, NONFINITE_PARAMS, NONFINITE_LOSS)
        reason = jnp.where(failed, code, reason).astype(reason.dtype)
        done = done + jnp.any(accept).astype(done.dtype)
        return i + 1, done, dynamic, (accept, stop_step, reason)

    zero = jnp.array(0, jnp.int32)
    _, done, dynamic, health = jax.lax.while_loop(
        cond, body, (zero, zero, dynamic, health)
    )
    model, opt_state = eqx.combine(dynamic, static)
    new_state = TrainingState(model, opt_state, state.run_state, step0 + done)
    alive = jnp.any(health[0])
    clean = alive & _all_finite(eqx.filter(model, eqx.is_inexact_array))
    return jax.tree.leaves(new_state), done, health, alive, guarded | clean


# ---------------------------------------------------------------------------
# Feeders: the host side of the samplers. `chunk(num_steps)` says what the
# next compiled chunk samples from (or None when the batches ran out),
# `advance(done)` how many of its batches were used.

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


@ft.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _tables(
    keys: PRNGKeyArray, n: int, epochs: int, mapped: bool, table_sharding: Any
) -> tuple[Int[Array, "*N epochs n"], PRNGKeyArray]:
    """The permutation tables of `epochs` epochs for `keys` (per member if mapped)."""
    schedule = ft.partial(epoch_keys, epochs=epochs)
    keys, next_keys = (jax.vmap(schedule) if mapped else schedule)(keys)
    table = permutations(keys, n)
    if table_sharding is not None:
        table = jax.lax.with_sharding_constraint(table, table_sharding)
    return table, next_keys


@ft.partial(jax.jit, static_argnums=2)
def _skip_epochs(keys: PRNGKeyArray, epochs: Int[Array, ""], mapped: bool) -> Any:
    def skip(key):
        return jax.lax.fori_loop(0, epochs, lambda _, k: jr.split(k, 1)[0], key)

    return (jax.vmap(skip) if mapped else skip)(keys)


class DeviceFeeder:
    """The batches `klax.batch_data` would yield (for each member's key), on device.

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
        keys: PRNGKeyArray,
        offset: int,
        steps: int,
        layout: Layout,
    ):
        full_axes, n = broadcast_and_get_size(data, batch_axes)
        batch_size = min(batch_size, n)
        leaves, treedef = jax.tree.flatten(data)
        axes = tuple(treedef.flatten_up_to(full_axes)) if data is not None else ()
        leaves = [jnp.asarray(x) if eqx.is_array(x) else x for x in leaves]
        self.leaves = layout.place_shared(leaves)
        self.table = None
        if all(axis is None for axis in axes) or batch_size == n:
            self.sampler: Any = _Constant()
            self.data = jax.tree.unflatten(treedef, self.leaves)
            return
        self.sampler = _Table(treedef, axes, n, batch_size)
        self.per_epoch = n // batch_size
        skipped_epochs, self.position = divmod(offset, self.per_epoch)
        members = layout.members or 1
        self.epochs = table_epochs(n, self.per_epoch, self.position + steps, members)
        self.mapped = layout.members is not None
        keys = layout.place_members(keys)
        if skipped_epochs:
            keys = _skip_epochs(keys, np.int32(skipped_epochs), self.mapped)
        self.next_keys = keys
        self.table_sharding = None
        if layout.mesh is not None:
            self.table_sharding = (
                replicated(layout.mesh)
                if layout.member_axes is None
                else along(layout.mesh, layout.member_axes, 0, 3)
            )

    def chunk(self, num_steps: int) -> tuple[Any, Any, Any, int] | None:
        if isinstance(self.sampler, _Constant):
            return self.sampler, self.data, None, num_steps
        capacity = self.epochs * self.per_epoch
        if self.table is None or self.position >= capacity:
            if self.table is not None:
                self.position -= capacity
            self.table, self.next_keys = _tables(
                self.next_keys,
                self.sampler.n,
                self.epochs,
                self.mapped,
                self.table_sharding,
            )
        # NumPy scalars: traced like arrays, without an eager device op per chunk.
        shared = (self.leaves, np.int32(self.position))
        return (
            self.sampler,
            shared,
            self.table,
            min(num_steps, capacity - self.position),
        )

    def advance(self, done: int) -> None:
        if not isinstance(self.sampler, _Constant):
            self.position += done


def _signature(batch: PyTree) -> Any:
    """What must agree for batches to be stacked and share a compilation."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple(
        (np.shape(x), x.dtype) if eqx.is_array(x) else ("static", x) for x in leaves
    )


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _stack(xs: Sequence[Any], axis: int) -> Any:
    if all(isinstance(x, np.ndarray | np.generic) for x in xs):
        return np.stack(xs, axis)
    return jnp.stack(xs, axis)


def _nbytes(batch: PyTree) -> int:
    arrays = [x for x in jax.tree.leaves(batch) if eqx.is_array(x)]
    return max(1, sum(int(np.prod(np.shape(x))) * x.dtype.itemsize for x in arrays))


# Upper bounds on one stacked chunk of host batches.
_MAX_HOST_CHUNK = 1000
_MAX_HOST_CHUNK_BYTES = 64 * 2**20


def host_chunk(periods: Sequence[int | None], steps: int) -> int:
    """The number of host batches to stack per chunk (at most the shortest period)."""
    given = [p for p in periods if p is not None]
    return max(1, min([*given, steps, _MAX_HOST_CHUNK]))


class HostFeeder:
    """Chunks of batches drawn from `context.batch_generator`, in order.

    The generator is looked up at every draw, so a callback may replace it.
    With members, it yields one batch per member at each step. Consecutive
    steps whose batches agree (across members too) in structure, shapes,
    dtypes and non-array leaves are stacked (padded to a fixed length, so that
    every chunk reuses one compilation) and transferred at once; a step that
    differs starts the next chunk.
    """

    def __init__(
        self, context: TrainingContext, chunk: int, offset: int, layout: Layout
    ):
        self.context = context
        self.length = max(1, chunk)
        self.layout = layout
        self.pending: list[tuple[PyTree, ...]] = []
        for _ in range(offset):
            if self._next() is None:
                break

    def _next(self) -> tuple[PyTree, ...] | None:
        # One step's batches as a tuple (of one batch, which may be None,
        # without members).
        if self.pending:
            return self.pending.pop()
        try:
            item = next(self.context.batch_generator)
        except StopIteration:
            return None
        if self.layout.members is None:
            return (item,)
        item = tuple(item)
        if len(item) != self.layout.members:
            raise invalid(
                "The ensemble's batch generator",
                f"to yield one batch per member ({self.layout.members})",
                f"{len(item)} batches",
            )
        return item

    def chunk(self, num_steps: int) -> tuple[Any, Any, Any, int] | None:
        first = self._next()
        if first is None:
            return None
        signature = _signature(first[0])
        if not all(_same(_signature(b), signature) for b in first[1:]):
            raise ValueError(
                "The members' batches of one step differ in structure, shape, dtype "
                "or non-array leaves; `klax.fit_ensemble` needs batches that can "
                "be stacked across members."
            )
        members = len(first)
        limit = _MAX_HOST_CHUNK_BYTES // (members * _nbytes(first[0]))
        length = min(self.length, max(1, limit))
        group = [first]
        while len(group) < min(num_steps, length):
            item = self._next()
            if item is None:
                break
            if not all(_same(_signature(b), signature) for b in item):
                self.pending.append(item)
                break
            group.append(item)
        count = len(group)
        group = group + [group[-1]] * (length - count)
        arrays = [[eqx.filter(b, eqx.is_array) for b in item] for item in group]
        if self.layout.members is None:  # (length, ...)
            own = jax.tree.map(lambda *xs: _stack(xs, 0), *[a[0] for a in arrays])
        else:  # (members, length, ...)
            steps = [jax.tree.map(lambda *xs: _stack(xs, 0), *a) for a in arrays]
            own = jax.tree.map(lambda *xs: _stack(xs, 1), *steps)
        own = self.layout.place_members(jax.tree.map(jnp.asarray, own))
        shared = eqx.filter(first[0], eqx.is_array, inverse=True)
        return _Stacked(), shared, own, count

    def advance(self, done: int) -> None:
        pass


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
    layout: Layout,
) -> None:
    """Run training as `klax.run_training_loop` specifies, fused between callbacks.

    `make_feeder(periods)` builds the feeder once the callbacks' periods are
    known. Sets `context.stop_step` / `context.stop_reason` (per member if
    there are members) when the guard rejected an update.
    """
    periods = [step_period(callback) for callback in callbacks]
    feeder = make_feeder(periods)
    optimizer = with_extra_args(context.optimizer)
    shape = () if layout.members is None else (layout.members,)
    health = layout.place_members(
        (
            jnp.ones(shape, bool),
            jnp.zeros(shape, jnp.int32),
            jnp.zeros(shape, jnp.int32),
        )
    )
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
        chunk = feeder.chunk(_next_stop(step, periods, context.steps) - step)
        if chunk is None:  # the batch iterator is exhausted
            break
        sampler, shared, own, count = chunk

        def run(guarded: bool) -> Any:
            return _run_chunk(
                context._state_leaves,
                context._state_treedef,
                layout,
                sampler,
                shared,
                own,
                health,
                np.int32(count),  # traced like an array, without an eager op
                context.loss,
                optimizer,
                guarded,
            )

        # A single model runs unguarded and replays the chunk only if needed.
        leaves, done, new_health, alive, clean = run(layout.members is not None)
        done, alive, clean = (int(x) for x in jax.device_get((done, alive, clean)))
        if not clean:  # replay guarded: find and reject the first bad update
            leaves, done, new_health, alive, _ = run(True)
            done, alive = (int(x) for x in jax.device_get((done, alive)))
        health = new_health
        feeder.advance(done)
        if done:
            context.update_state(leaves)
        if not alive:
            break
        new_step = step + done
        stop = False
        for callback, period in zip(callbacks, periods, strict=True):
            if period is not None and new_step % period == 0:
                stop = bool(callback.on_training_step(context)) or stop
        if stop:
            break
    _report(context, health, layout)
    for callback in callbacks:
        callback.on_training_end(context)


def _report(context: TrainingContext, health: Health, layout: Layout) -> None:
    """Store the step and reason of each member's rejected update in `context`."""
    if layout.mesh is not None:  # readable on every host
        health = gather(health, layout.mesh)
    alive, stop_step, reason = (np.atleast_1d(x) for x in jax.device_get(health))
    steps = [None if a else int(s) for a, s in zip(alive, stop_step, strict=True)]
    reasons = [
        None if a else STOP_REASONS[int(r)] for a, r in zip(alive, reason, strict=True)
    ]
    if layout.members is None:
        context.stop_step, context.stop_reason = steps[0], reasons[0]
    else:
        context.stop_step, context.stop_reason = steps, reasons  # pyright: ignore


def warn_stop(context: TrainingContext, stacklevel: int) -> None:
    """Warn that the non-finite guard froze the model or some members (if it did)."""
    what = (
        "Lower the learning rate, check the data and the loss for NaN/inf, or "
        "clip gradients (e.g. optax.clip_by_global_norm)."
    )
    stop_steps, reasons = context.stop_step, context.stop_reason
    if isinstance(stop_steps, list) and isinstance(reasons, list):
        frozen = [i for i, s in enumerate(stop_steps) if s is not None]
        if not frozen:
            return
        shown = ", ".join(
            f"member {i} at step {stop_steps[i]} ({reasons[i]})" for i in frozen[:5]
        )
        more = f", and {len(frozen) - 5} more" if len(frozen) > 5 else ""
        message = (
            f"{len(frozen)} of {len(stop_steps)} ensemble members were frozen by "
            f"the non-finite guard: {shown}{more}. Each keeps its parameters and "
            "optimizer state from before the rejected update; the other members "
            f"trained on (to step {context.steps} at most). See history.stop_step "
            "/ history.stop_reason."
        )
    elif not isinstance(stop_steps, int):
        return
    else:
        k = stop_steps
        message = (
            f"Training stopped at step {k} of {context.steps}: the update produced "
            f"a {reasons}. It was rejected; the returned model and optimizer state "
            f"are those after step {k - 1}, the last finite ones."
        )
    warnings.warn(f"{message} {what}", RuntimeWarning, stacklevel=stacklevel + 1)


# ---------------------------------------------------------------------------
# fit and fit_ensemble


class _EnsembleLogger(MetricLogger):
    """A `MetricLogger` that shows per-member values as median (min, max)."""

    def _describe(self, name: str, value: Any) -> str:
        values = np.asarray(value)
        if values.ndim == 1 and values.size and np.issubdtype(values.dtype, np.number):
            finite = values[np.isfinite(values)]
            if finite.size:
                return (
                    f"{name}: {np.median(finite):.4e} (min {finite.min():.3e}, "
                    f"max {finite.max():.3e})"
                )
        return super()._describe(name, value)


@ft.lru_cache(maxsize=32)
def _members_loss(
    loss: Loss, run_state_axis: int | None, mesh: Any
) -> Callable[[Any, PyTree, Any], Array]:
    """`(ensemble, batch, run_state) -> losses`, one per member, same batch.

    Cached, so that repeated fits reuse the compiled metric.
    """

    def evaluate(ensemble, batch, run_state):
        rs_axes = None if run_state_axis is None else eqx.if_array(run_state_axis)
        in_axes = (eqx.if_array(0), None, rs_axes)
        values = eqx.filter_vmap(loss, in_axes=in_axes)(ensemble, batch, run_state)
        if mesh is not None:  # gathered, so the host can read it (multi-host too)
            values = jax.lax.with_sharding_constraint(values, replicated(mesh))
        return values

    return evaluate


def _member_batches(batcher, data, batch_size, batch_axes, keys):
    """`context.batch_generator` of an ensemble: one batch per member and step.

    Member `m`'s batches come from `batcher(data, batch_size, batch_axes,
    key=keys[m])`; the generators are created on first use.
    """
    generators = [batcher(data, batch_size, batch_axes, key=k) for k in keys]
    while True:
        try:
            yield tuple(next(g) for g in generators)
        except StopIteration:
            return


def train(
    model: Any,
    data: PyTree,
    *,
    where: str,
    members: int | None,
    batch_size: int,
    batch_axes: PyTree,
    run_state: Any,
    validation_data: PyTree,
    steps: int,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    init_opt_state: PyTree,
    batcher: Any,
    make_logger: bool,
    metrics: Sequence[Metric] | None,
    log_every: int,
    verbose: int,
    callbacks: Sequence[Any] | None,
    batch_offset: int,
    mesh: Any,
    key: PRNGKeyArray,
    run_state_per_member: bool = False,
    shard: Any = "batch",
) -> tuple[Any, History | None]:
    """`klax.fit` (`members=None`) and `klax.fit_ensemble` (`members=N`).

    `where` names the public function in error messages.
    """
    steps = check_int(steps, f"`{where}(steps=...)`")
    batch_offset = check_int(batch_offset, f"`{where}(batch_offset=...)`")
    check_loss_and_optimizer(loss, optimizer, where)
    callbacks = check_callbacks(callbacks)
    mesh = resolve_mesh(mesh, where)
    member_axes, batch_mesh_axes = (
        (None, None) if mesh is None else shard_plan(mesh, shard, members, where)
    )
    layout = Layout(members, 0 if run_state_per_member else None, mesh, member_axes)
    if run_state_per_member:
        check_member_axis(run_state, members, f"`{where}(run_state=...)`")
    if validation_data is not None:
        check_like(data, validation_data, batch_axes, f"`{where}(validation_data=...)`")

    params = eqx.filter(model, eqx.is_inexact_array)
    if init_opt_state is not None:
        init = layout.map(optimizer.init)
        check_opt_state(init, params, init_opt_state, f"`{where}(init_opt_state=...)`")
    opt_state = (
        layout.map(optimizer.init)(params) if init_opt_state is None else init_opt_state
    )
    model = layout.map(apply)(model)
    if members is None:
        batch_keys = jr.split(key)[0]
        batch_generator = batcher(data, batch_size, batch_axes, key=batch_keys)
    else:
        batch_keys = jax.vmap(lambda k: jr.split(k)[0])(jr.split(key, members))
        batch_generator = _member_batches(
            batcher, data, batch_size, batch_axes, batch_keys
        )

    train_loss = loss
    if mesh is not None:
        model, opt_state = layout.place_members((model, opt_state))
        place = layout.place_members if run_state_per_member else layout.place_shared
        run_state = place(run_state)
        if batch_mesh_axes is not None:
            train_loss = BatchShardedLoss(loss, mesh, batch_mesh_axes, batch_axes)
    context = TrainingContext(
        model, optimizer, opt_state, batch_generator, run_state, train_loss, steps
    )

    logger = None
    if make_logger:
        metric_key = batch_keys if members is None else batch_keys[0]
        evaluate = (
            loss
            if members is None
            else _members_loss(loss, layout.run_state_axis, mesh)
        )
        sets = [
            ("loss", data, batch_size),
            ("validation_loss", validation_data, 4 * batch_size),
        ]
        default: list[Metric] = [
            BatchMetric(
                name, evaluate, d, batcher, size, batch_axes, True, key=metric_key
            )
            for name, d, size in sets[: 1 if validation_data is None else 2]
        ]
        make = MetricLogger if members is None else _EnsembleLogger
        logger = make(log_every, [*default, *(metrics or [])], verbose)
        callbacks.append(logger)

    if batcher is batch_data:
        size = check_int(batch_size, "batch_size", minimum=1)
        feeder = DeviceFeeder(
            data, size, batch_axes, batch_keys, batch_offset, steps, layout
        )
        run_loop(context, callbacks, lambda periods: feeder, layout)
    else:

        def make_feeder(periods):
            return HostFeeder(context, host_chunk(periods, steps), batch_offset, layout)

        run_loop(context, callbacks, make_feeder, layout)
    warn_stop(context, stacklevel=3)
    if logger is None:
        return context.state.model, None
    logger.history.stop_step = context.stop_step
    logger.history.stop_reason = context.stop_reason
    return context.state.model, logger.history
