"""The one training loop of klax, behind `run_training_loop`, `fit` and `fit_ensemble`.

One update rule, `train_step`. The host loop (`run_loop`) calls the callbacks
and in between runs as many updates as possible in one compiled call
(`_run_chunk`), vmapped over a leading *member* axis for an ensemble. Batches
come from a feeder: `DeviceFeeder` reproduces `klax.batch_data` on the device,
`HostFeeder` stacks and transfers a chunk of any iterator's batches.
"""

import functools as ft
import operator
import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace
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
from ._logging import BatchMetric, History, MetricLogger
from ._losses import Loss
from ._misc import (
    check_callbacks,
    check_int,
    check_loss_and_optimizer,
    check_member_axis,
    check_opt_state,
    invalid,
    is_none,
    same,
    stack_signature,
    with_extra_args,
)
from ._sharding import (
    along,
    constrain_leading,
    gather,
    place,
    replicated,
    resolve_mesh,
    shard_plan,
    split_batch,
)
from ._trainstate import TrainingContext, TrainingState
from ._wrappers import apply

DEFAULT_OPTIMIZER = optax.adam(1e-3)

# ---------------------------------------------------------------------------
# The update rule


def train_step(
    state: TrainingState,
    batch: PyTree,
    loss: Loss,
    optimizer: optax.GradientTransformationExtraArgs,
) -> tuple[TrainingState, Scalar]:
    """One update (that of `klax.make_step`); returns the new state and the loss."""
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


# Why a member was frozen: `STOP_REASONS[code]` (code 0: it was not).
NONFINITE_LOSS, NONFINITE_PARAMS = 1, 2
STOP_REASONS = (None, "non-finite loss", "non-finite parameters")


def _all_finite(tree: PyTree) -> Bool[Array, ""]:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return ft.reduce(operator.and_, leaves, jnp.array(True))


# Samplers: static configuration of how a chunk draws the batch of its step `i`
# from its arrays `shared` (by every member) and `own` (mapped over members).


class _Table(eqx.Module):
    """`shared = (data_leaves, first)`, `own` a permutation table; batch `first + i`."""

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


class Layout(eqx.Module):
    """How a run is laid out (static): members, run-state axis, mesh, member axes.

    `members` is None for one model, `member_axes` (the mesh axes splitting the
    members) if they are not split; `run_state_axis` is 0 if the run state has
    a member axis; `batch_split`, if the batches are split over the mesh, is
    `(mesh axes, leaves, treedef)` of `batch_axes` (flattened: hashable).
    """

    members: int | None = eqx.field(static=True, default=None)
    run_state_axis: int | None = eqx.field(static=True, default=None)
    mesh: Any = eqx.field(static=True, default=None)
    member_axes: tuple[str, ...] | None = eqx.field(static=True, default=None)
    batch_split: Any = eqx.field(static=True, default=None)

    def split_batch(self, batch: PyTree) -> PyTree:
        """`batch` split over the mesh (data parallel), if the batches are."""
        if self.batch_split is None:
            return batch
        axes, leaves, treedef = self.batch_split
        batch_axes = jax.tree.unflatten(treedef, leaves)
        return split_batch(batch, self.mesh, axes, batch_axes)

    def sharding(self, ndim: int) -> Any:
        """Where an array with a member axis lies: split if the members are."""
        if self.mesh is None:
            return None
        if self.member_axes is None or not ndim:
            return replicated(self.mesh)
        return along(self.mesh, self.member_axes, 0, ndim)

    def place_members(self, tree: PyTree) -> PyTree:
        """Arrays with a member axis on the mesh."""
        return (
            tree if self.mesh is None else place(tree, lambda x: self.sharding(x.ndim))
        )

    def place_shared(self, tree: PyTree) -> PyTree:
        """Arrays every member reads, replicated on the mesh."""
        return tree if self.mesh is None else place(tree, lambda _: self.sharding(0))

    def map(self, fn: Callable, in_axes: Any = None) -> Callable:
        """`fn` vmapped over the members (by default `eqx.filter_vmap`), if any."""
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

    Guarded, an update is kept only where the member is alive and its loss and
    parameters are finite; otherwise the member is frozen and `health =
    (alive, stop_step, reason)` records it. The loop ends once no member is
    alive. Unguarded (while every member is alive: the select and the per-step
    parameter check add a third to the kernels of a small model's step), every
    update is applied, the loop ends at the first non-finite loss, and the
    host replays a chunk that is not `clean` guarded.

    Returns the state leaves, the number of updates done, the health, whether
    any member is alive and whether every member is alive with finite
    parameters (`clean`).
    """
    state = jax.tree.unflatten(state_treedef, state_leaves)
    dynamic, static = eqx.partition((state.model, state.opt_state), eqx.is_array)
    rs_dynamic, rs_static = eqx.partition(state.run_state, eqx.is_array)
    step0 = state.step

    def update(dynamic, own, rs_dynamic, i, step):
        model, opt_state = eqx.combine(dynamic, static)
        run_state = eqx.combine(rs_dynamic, rs_static)
        old = TrainingState(model, opt_state, run_state, step)
        batch = layout.split_batch(sampler.draw(shared, own, i))
        new, value = train_step(old, batch, loss, optimizer)
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
        return (i < num_steps) & (jnp.any(alive) if guarded else jnp.all(alive))

    def body(carry):
        i, done, dynamic, (alive, stop_step, reason) = carry
        step = step0 + done
        new, loss_ok, params_ok = update(dynamic, own, rs_dynamic, i, step)
        if guarded:
            ok = loss_ok & params_ok
            failed, alive = alive & ~ok, alive & ok
            new = select(alive, new, dynamic)
            stop_step = jnp.where(failed, step + 1, stop_step).astype(stop_step.dtype)
            code = jnp.where(loss_ok, NONFINITE_PARAMS, NONFINITE_LOSS)
            reason = jnp.where(failed, code, reason).astype(reason.dtype)
            done = done + jnp.any(alive).astype(done.dtype)
        else:  # no bookkeeping: a chunk that is not clean is replayed
            done, alive = done + 1, loss_ok
        if layout.member_axes is not None:
            new = constrain_leading(new, layout.mesh, layout.member_axes)
        return i + 1, done, new, (alive, stop_step, reason)

    zero = jnp.array(0, jnp.int32)
    _, done, dynamic, health = jax.lax.while_loop(
        cond, body, (zero, zero, dynamic, health)
    )
    model, opt_state = eqx.combine(dynamic, static)
    new_state = TrainingState(model, opt_state, state.run_state, step0 + done)
    clean = jnp.all(health[0]) & _all_finite(eqx.filter(model, eqx.is_inexact_array))
    return jax.tree.leaves(new_state), done, health, jnp.any(health[0]), clean


# Feeders: `chunk(num_steps)` gives the next chunk's sampler and arrays (None
# when the batches ran out), `advance(done)` how many of its batches were used.

# A permutation table covers up to _TABLE_STEPS steps (so that long runs are
# rarely cut at table boundaries) within _TABLE_ENTRIES indices (16 MiB).
_TABLE_STEPS = 2**16
_TABLE_ENTRIES = 2**22


def table_epochs(n: int, per_epoch: int, steps: int, members: int = 1) -> int:
    """Epochs per permutation table: enough for `steps`, a power of two, >= 2."""
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

    Skips `offset` batches; `steps` sizes the tables. A full batch is the data
    as stored (its batches differ only in the order of their samples).
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
        self.table_args = (n, self.epochs, self.mapped, layout.sharding(3))

    def chunk(self, num_steps: int) -> tuple[Any, Any, Any, int] | None:
        if isinstance(self.sampler, _Constant):
            return self.sampler, self.data, None, num_steps
        capacity = self.epochs * self.per_epoch
        if self.table is None or self.position >= capacity:
            if self.table is not None:
                self.position -= capacity
            self.table, self.next_keys = _tables(self.next_keys, *self.table_args)
        count = min(num_steps, capacity - self.position)
        # NumPy scalars: traced like arrays, without an eager device op per chunk.
        return self.sampler, (self.leaves, np.int32(self.position)), self.table, count

    def advance(self, done: int) -> None:
        if not isinstance(self.sampler, _Constant):
            self.position += done


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


class HostFeeder:
    """Chunks of batches drawn from `context.batch_generator` (looked up each time).

    With members, it yields one batch per member and step. Consecutive steps
    whose batches agree in structure, shapes, dtypes and non-array leaves are
    stacked (padded to a fixed length, at most the shortest of the callbacks'
    `periods`: one compilation) and transferred at once; a step that differs
    starts the next chunk.
    """

    def __init__(
        self,
        context: TrainingContext,
        periods: Sequence[int | None],
        offset: int,
        layout: Layout,
    ):
        self.context = context
        given = [p for p in periods if p is not None]
        self.length = max(1, min([*given, context.steps, _MAX_HOST_CHUNK]))
        self.layout = layout
        self.pending: list[tuple[PyTree, ...]] = []
        for _ in range(offset):
            if self._next() is None:
                break

    def _next(self) -> tuple[PyTree, ...] | None:
        # One step's batches as a tuple (of one, possibly None, without members).
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
        signature = stack_signature(first[0])
        if not all(same(stack_signature(b), signature) for b in first[1:]):
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
            if not all(same(stack_signature(b), signature) for b in item):
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


def run_loop(
    context: TrainingContext,
    callbacks: Sequence[Any],
    make_feeder: Callable[[Sequence[int | None]], Any],
    layout: Layout,
) -> None:
    """`klax.run_training_loop`; `make_feeder(periods)` gets the callbacks' periods."""
    periods = [step_period(callback) for callback in callbacks]
    feeder = make_feeder(periods)
    optimizer = with_extra_args(context.optimizer)
    shape = () if layout.members is None else (layout.members,)
    zeros = jnp.zeros(shape, jnp.int32)
    health = layout.place_members((jnp.ones(shape, bool), zeros, zeros))
    guarded = False
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
        # Run up to the next step at which some callback must run.
        stops = [(step // p + 1) * p for p in periods if p is not None]
        chunk = feeder.chunk(min([context.steps, *stops]) - step)
        if chunk is None:  # the batch iterator is exhausted
            break
        sampler, shared, own, count = chunk

        # The chunk's inputs (np.int32: traced like an array, no eager op).
        args = (context._state_leaves, context._state_treedef, layout, sampler)
        args += (shared, own, health, np.int32(count), context.loss, optimizer)

        # Unguarded while every member is alive; a chunk that is not clean is
        # replayed guarded (finding and rejecting the first bad updates).
        leaves, done, new_health, alive, clean = _run_chunk(*args, guarded)
        done, alive, clean = (int(x) for x in jax.device_get((done, alive, clean)))
        if not (guarded or clean):
            leaves, done, new_health, alive, clean = _run_chunk(*args, True)
            done, alive, clean = (int(x) for x in jax.device_get((done, alive, clean)))
        health, guarded = new_health, not clean
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
    reasons = [STOP_REASONS[int(r)] for r in reason]  # code 0 (None) while alive
    if layout.members is None:
        context.stop_step, context.stop_reason = steps[0], reasons[0]
    else:
        context.stop_step, context.stop_reason = steps, reasons  # pyright: ignore


def warn_stop(context: TrainingContext, stacklevel: int) -> None:
    """Warn that the non-finite guard froze the model or some members (if it did)."""
    steps, reasons = context.stop_step, context.stop_reason
    if isinstance(steps, list) and isinstance(reasons, list):
        frozen = [i for i, s in enumerate(steps) if s is not None]
        if not frozen:
            return
        shown = [f"member {i} at step {steps[i]} ({reasons[i]})" for i in frozen[:5]]
        more = f", and {len(frozen) - 5} more" if len(frozen) > 5 else ""
        message = (
            f"{len(frozen)} of {len(steps)} ensemble members were frozen by the "
            f"non-finite guard: {', '.join(shown)}{more}. Each keeps its parameters "
            "and optimizer state from before the rejected update; the other members "
            f"trained on (to step {context.steps} at most). See history.stop_step "
            "/ history.stop_reason."
        )
    elif isinstance(steps, int):
        message = (
            f"Training stopped at step {steps} of {context.steps}: the update "
            f"produced a {reasons}. It was rejected; the returned model and optimizer "
            f"state are those after step {steps - 1}, the last finite ones."
        )
    else:
        return
    what = (
        "Lower the learning rate, check the data and the loss for NaN/inf, or "
        "clip gradients (e.g. optax.clip_by_global_norm)."
    )
    warnings.warn(f"{message} {what}", RuntimeWarning, stacklevel=stacklevel + 1)


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
    """`(ensemble, batch, run_state) -> losses`, one per member (cached: reused)."""

    def evaluate(ensemble, batch, run_state):
        rs_axes = None if run_state_axis is None else eqx.if_array(run_state_axis)
        in_axes = (eqx.if_array(0), None, rs_axes)
        values = eqx.filter_vmap(loss, in_axes=in_axes)(ensemble, batch, run_state)
        if mesh is not None:  # gathered, so the host can read it (multi-host too)
            values = jax.lax.with_sharding_constraint(values, replicated(mesh))
        return values

    return evaluate


def train(
    model: Any, *, where: str, members: int | None, **options: Any
) -> tuple[Any, History | None]:
    """`klax.fit` (`members=None`) and `klax.fit_ensemble` (`members=N`).

    `options` are their other arguments; `where` names the function in errors.
    """
    o = SimpleNamespace(**{"run_state_per_member": False, "shard": "batch", **options})
    steps = check_int(o.steps, f"`{where}(steps=...)`")
    batch_offset = check_int(o.batch_offset, f"`{where}(batch_offset=...)`")
    check_loss_and_optimizer(o.loss, o.optimizer, where)
    callbacks = check_callbacks(o.callbacks)
    mesh = resolve_mesh(o.mesh, where)
    member_axes, batch_mesh_axes = (
        (None, None) if mesh is None else shard_plan(mesh, o.shard, members, where)
    )
    data, batch_axes, batcher = o.data, o.batch_axes, o.batcher
    split = None
    if batch_mesh_axes is not None:
        split = (batch_mesh_axes, *jax.tree.flatten(batch_axes, is_leaf=is_none))
    per_member = o.run_state_per_member
    layout = Layout(members, 0 if per_member else None, mesh, member_axes, split)
    if per_member:
        check_member_axis(o.run_state, members, f"`{where}(run_state=...)`")
    if o.validation_data is not None:
        name = f"`{where}(validation_data=...)`"
        check_like(data, o.validation_data, batch_axes, name)

    params, init = eqx.filter(model, eqx.is_inexact_array), layout.map(o.optimizer.init)
    opt_state = o.init_opt_state
    if opt_state is None:
        opt_state = init(params)
    else:
        check_opt_state(init, params, opt_state, f"`{where}(init_opt_state=...)`")
    model = layout.map(apply)(model)
    if members is None:
        batch_keys = jr.split(o.key)[0]
        batches = batcher(data, o.batch_size, batch_axes, key=batch_keys)
    else:  # one batch per member and step, member m's from key batch_keys[m]
        batch_keys = jax.vmap(lambda k: jr.split(k)[0])(jr.split(o.key, members))
        batches = zip(  # until one member's batches run out
            *[batcher(data, o.batch_size, batch_axes, key=k) for k in batch_keys],
            strict=False,
        )

    model, opt_state = layout.place_members((model, opt_state))  # (on the mesh)
    place = layout.place_members if per_member else layout.place_shared
    context = TrainingContext(
        model, o.optimizer, opt_state, batches, place(o.run_state), o.loss, steps
    )

    logger = None
    if o.make_logger:
        if members is None:
            evaluate, metric_key, make = o.loss, batch_keys, MetricLogger
        else:
            evaluate = _members_loss(o.loss, layout.run_state_axis, mesh)
            metric_key, make = batch_keys[0], _EnsembleLogger
        metric = ft.partial(
            BatchMetric, func=evaluate, batcher=batcher, batch_axes=batch_axes
        )
        metric = ft.partial(metric, verbose=True, key=metric_key)
        default = [metric("loss", data=data, batch_size=o.batch_size)]
        if o.validation_data is not None:
            size = 4 * o.batch_size
            default.append(
                metric("validation_loss", data=o.validation_data, batch_size=size)
            )
        logger = make(o.log_every, [*default, *(o.metrics or [])], o.verbose)
        callbacks.append(logger)

    def make_feeder(periods: Sequence[int | None]) -> Any:
        if batcher is not batch_data:
            return HostFeeder(context, periods, batch_offset, layout)
        size = check_int(o.batch_size, "batch_size", minimum=1)
        return DeviceFeeder(
            data, size, batch_axes, batch_keys, batch_offset, steps, layout
        )

    run_loop(context, callbacks, make_feeder, layout)
    warn_stop(context, stacklevel=3)
    history = None if logger is None else logger.history
    if history is not None:
        history.stop_step, history.stop_reason = context.stop_step, context.stop_reason
    return context.state.model, history
