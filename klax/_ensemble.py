"""Ensembles: many independently initialised copies of a model, trained as one.

An *ensemble* is an ordinary model pytree in which every array has a leading
axis of length `N`, one entry per member, as `eqx.filter_vmap` over a model
constructor builds it ([`klax.make_ensemble`][]). Non-array leaves (sizes,
flags, activation functions) are shared by all members. Because it is a plain
pytree, an ensemble can be saved with `eqx.tree_serialise_leaves`, mapped with
`jax.tree.map` and vmapped like any model.

[`klax.fit_ensemble`][] trains all members in one compiled loop: the update of
[`klax.fit`][] (`train_step`, the one update rule of klax) is vmapped over the
members, each with its own optimizer state, its own batch order and its own
non-finite guard.
"""

import functools as ft
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Bool, Int, PRNGKeyArray, PyTree

from . import _sharding
from ._callbacks import Callback
from ._datahandler import Batcher, _check_batch_size, batch_data
from ._logging import BatchMetric, History, Metric, MetricLogger
from ._loop import (
    _MAX_HOST_CHUNK_BYTES,
    NONFINITE_LOSS,
    NONFINITE_PARAMS,
    OK,
    STOP_REASONS,
    _all_finite,
    _Constant,
    _DeviceBatchData,
    _same,
    _split_n_times,
    _Stacked,
    epoch_keys,
    host_chunk,
    permutations,
    plan_device_batches,
    run_loop,
    table_epochs,
    train_step,
)
from ._losses import Loss, mse
from ._training import _DEFAULT_OPTIMIZER, _check_callbacks, _check_count
from ._trainstate import TrainingContext, TrainingState
from ._wrappers import apply, finalize

TModel = TypeVar("TModel")

# ---------------------------------------------------------------------------
# Building, inspecting and splitting ensembles


def make_ensemble(
    make_model: Callable[[PRNGKeyArray], TModel], n: int, *, key: PRNGKeyArray
) -> TModel:
    """Build an ensemble of `n` independently initialised models.

    Calls `make_model` under `eqx.filter_vmap` with `n` keys split from `key`
    (`jax.random.split(key, n)`; member `i` is `make_model(keys[i])`, up to
    round-off), compiled as one program (falling back to eager execution if
    `make_model` needs concrete values of arrays that do not come from the
    key), so the result is one model of the usual type whose arrays all
    have a leading axis of length `n`. Arrays that do not depend on the key
    are repeated along that axis; non-array fields are shared.

    **Arguments:**

    - `make_model`: a function `key -> model`, e.g.
      `lambda k: klax.nn.FICNN(2, "scalar", [8, 8], key=k)`. It is traced
      (run once, with an abstract key), so it must not branch on key values.
    - `n`: the number of members (an int >= 1).
    - `key`: a JAX PRNG key. (Keyword only argument.)

    **Returns:**

    The ensemble: a model whose every array has shape `(n, *member_shape)`.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 5, key=jr.key(0))
        >>> ensemble.layers[0].weight.shape, klax.ensemble_size(ensemble)
        ((5, 2, 8), 5)
    """
    if not callable(make_model):
        raise TypeError(
            "`klax.make_ensemble(make_model=...)` must be a function `key -> "
            f"model`; got {make_model!r} of type {type(make_model).__name__}."
        )
    n = _check_positive(n, "klax.make_ensemble(n=...)")
    keys = jr.split(key, n)
    try:
        return _build_members(make_model, keys)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return eqx.filter_vmap(make_model)(keys)


@ft.partial(
    jax.jit,
    static_argnums=0,
    # Initialisation runs once: compile it fast rather than optimise it (on
    # CPU this cuts the compile time of a vmapped initialisation 3x).
    compiler_options={"xla_backend_optimization_level": 0},
)
def _member_arrays(make_model: Callable[[PRNGKeyArray], Any], keys: Any) -> Any:
    return eqx.filter(eqx.filter_vmap(make_model)(keys), eqx.is_array)


def _build_members(make_model: Callable[[PRNGKeyArray], Any], keys: Any) -> Any:
    """`eqx.filter_vmap(make_model)(keys)` as one compiled program.

    (Run eagerly, every operation of the initialisers would be compiled on
    its own.) The arrays come from the compiled program, the non-array fields
    from an abstract evaluation.
    """
    arrays = _member_arrays(make_model, keys)
    skeleton = eqx.filter_eval_shape(eqx.filter_vmap(make_model), keys)
    static = jax.tree.map(
        lambda x: None if isinstance(x, jax.ShapeDtypeStruct) else x, skeleton
    )
    return eqx.combine(arrays, static)


def _check_positive(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"`{where}` must be a positive int; got {value!r}.")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{where}` must be a positive int; got {value!r} of type "
            f"{type(value).__name__}."
        ) from None
    if count < 1:
        raise ValueError(f"`{where}` must be at least 1; got {count}.")
    return count


def ensemble_size(ensemble: PyTree) -> int:
    """The number of members of an ensemble (the leading axis of its arrays).

    **Arguments:**

    - `ensemble`: an ensemble, e.g. from [`klax.make_ensemble`][].

    **Returns:**

    `N`, the common length of the leading axis of every array in `ensemble`.

    **Raises:**

    `ValueError` if `ensemble` holds no arrays, a 0-d array, or arrays whose
    leading axes differ (then it is not an ensemble).

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> klax.ensemble_size({"w": jnp.zeros((4, 2, 3)), "b": jnp.zeros((4, 3))})
        4
    """
    arrays = [x for x in jax.tree.leaves(ensemble) if eqx.is_array(x)]
    if not arrays:
        raise ValueError(
            "Not an ensemble: it holds no arrays, so it has no member axis. Build "
            "ensembles with `klax.make_ensemble` or `klax.stack_ensemble`."
        )
    shapes = {tuple(np.shape(x)) for x in arrays}
    sizes = {shape[0] for shape in shapes if shape}
    if len(sizes) != 1 or () in shapes:
        raise ValueError(
            "Not an ensemble: every array must have the same leading (member) "
            f"axis, but the arrays have shapes {sorted(shapes, key=str)}. Build "
            "ensembles with `klax.make_ensemble` or `klax.stack_ensemble`."
        )
    return int(sizes.pop())


def _check_index(i: Any, n: int, where: str) -> int:
    if isinstance(i, bool):
        raise TypeError(f"`{where}` must be an int; got {i!r}.")
    try:
        index = operator.index(i)
    except TypeError:
        raise TypeError(
            f"`{where}` must be an int member index; got {i!r} of type "
            f"{type(i).__name__}."
        ) from None
    if not -n <= index < n:
        raise ValueError(
            f"`{where}` is out of range for an ensemble of {n} members; got {index}."
        )
    return index % n


def ensemble_member(ensemble: TModel, i: int) -> TModel:
    """Member `i` of an ensemble, as an ordinary model.

    **Arguments:**

    - `ensemble`: an ensemble of `N` members.
    - `i`: the member index, `-N <= i < N` (negative counts from the end).

    **Returns:**

    The model whose arrays are entry `i` of the ensemble's arrays (still
    wrapped: pass it through [`klax.finalize`][] before calling it).

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 5, key=jr.key(0))
        >>> klax.ensemble_member(ensemble, 3).layers[0].weight.shape
        (2, 8)
    """
    n = ensemble_size(ensemble)
    i = _check_index(i, n, "klax.ensemble_member(i=...)")
    return jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, ensemble)


def split_ensemble(ensemble: TModel) -> list[TModel]:
    """Split an ensemble into a list of its `N` members (ordinary models).

    The inverse of [`klax.stack_ensemble`][].

    **Arguments:**

    - `ensemble`: an ensemble of `N` members.

    **Returns:**

    A list of `N` models; entry `i` equals `klax.ensemble_member(ensemble, i)`.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 3, key=jr.key(0))
        >>> [m.layers[1].weight.shape for m in klax.split_ensemble(ensemble)]
        [(8, 1), (8, 1), (8, 1)]
    """
    n = ensemble_size(ensemble)
    dynamic, static = eqx.partition(ensemble, eqx.is_array)
    leaves, treedef = jax.tree.flatten(dynamic)
    columns = [list(leaf) for leaf in leaves]
    return [
        eqx.combine(jax.tree.unflatten(treedef, [c[i] for c in columns]), static)
        for i in range(n)
    ]


def stack_ensemble(models: Sequence[TModel]) -> TModel:
    """Stack models of identical structure into an ensemble.

    The inverse of [`klax.split_ensemble`][]; use it to make an ensemble of
    models that were built or trained separately.

    **Arguments:**

    - `models`: a non-empty sequence of models with the same structure, the
      same array shapes and dtypes, and equal non-array fields.

    **Returns:**

    The ensemble: each array is the stack of the models' arrays along a new
    leading axis.

    **Raises:**

    `ValueError` if the models differ in structure, shapes, dtypes or
    non-array fields.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> models = [klax.nn.Linear(2, 3, jr.normal, key=jr.key(i)) for i in range(4)]
        >>> klax.stack_ensemble(models).weight.shape
        (4, 2, 3)
    """
    models = list(models)
    if not models:
        raise ValueError("`klax.stack_ensemble(models=...)` needs at least one model.")
    parts = [eqx.partition(m, eqx.is_array) for m in models]
    first_dynamic, first_static = parts[0]
    treedef = jax.tree.structure(first_dynamic)
    first_shapes = [
        (np.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(first_dynamic)
    ]
    for i, (dynamic, static) in enumerate(parts[1:], start=1):
        if jax.tree.structure(dynamic) != treedef or not eqx.tree_equal(
            static, first_static
        ):
            raise ValueError(
                f"`klax.stack_ensemble`: model {i} differs from model 0 in its "
                "structure or in a non-array field; only models built alike "
                "(same class, sizes and options) can form an ensemble."
            )
        shapes = [(np.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(dynamic)]
        if shapes != first_shapes:
            raise ValueError(
                f"`klax.stack_ensemble`: the arrays of model {i} differ in shape or "
                "dtype from those of model 0."
            )
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[d for d, _ in parts])
    return eqx.combine(stacked, first_static)


class EnsembleOutput(NamedTuple):
    """What [`klax.evaluate_ensemble`][] returns: statistics over the members.

    - `mean`: the mean of the members' outputs.
    - `std`: their standard deviation (the population one, `ddof=0`).
    - `outputs`: every member's output, stacked along a leading axis of
      length `N`.

    Each has the structure of one member's output.
    """

    mean: PyTree
    std: PyTree
    outputs: PyTree


@eqx.filter_jit
def _evaluate(ensemble: PyTree, args: tuple, batched: bool) -> EnsembleOutput:
    def member_output(member):
        model = finalize(member)
        return jax.vmap(model)(*args) if batched else model(*args)

    outputs = eqx.filter_vmap(member_output)(ensemble)
    mean = jax.tree.map(lambda y: jnp.mean(y, axis=0), outputs)
    std = jax.tree.map(lambda y: jnp.std(y, axis=0), outputs)
    return EnsembleOutput(mean, std, outputs)


def evaluate_ensemble(
    ensemble: PyTree, *args: Any, batched: bool = False
) -> EnsembleOutput:
    """Call every member on the same input; return the mean, spread and outputs.

    Each member is finalized ([`klax.finalize`][]) and called as
    `member(*args)`, all members at once (vmapped, compiled).

    **Arguments:**

    - `ensemble`: an ensemble of `N` members (finalized or not).
    - `*args`: the input(s) of one call of a member.
    - `batched`: if True, `args` hold a batch along their axis 0 and each
      member is called as `jax.vmap(member)(*args)`. (Keyword only argument.)

    **Returns:**

    An `EnsembleOutput` `(mean, std, outputs)`: the mean and standard deviation
    over the members, each shaped like one member's output, and all outputs
    stacked, of shape `(N, *output_shape)`.

    Example:
        >>> import jax.numpy as jnp
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 5, key=jr.key(0))
        >>> out = klax.evaluate_ensemble(ensemble, jnp.ones((10, 2)), batched=True)
        >>> out.mean.shape, out.std.shape, out.outputs.shape
        ((10,), (10,), (5, 10))
    """
    ensemble_size(ensemble)
    return _evaluate(ensemble, args, bool(batched))


def best_member(
    ensemble: TModel,
    score: Any,
    *,
    minimize: bool = True,
) -> tuple[TModel, int]:
    """The member with the lowest (or highest) score, and its index.

    **Arguments:**

    - `ensemble`: an ensemble of `N` members.
    - `score`: either `N` scores (an array-like of shape `(N,)`, e.g. the last
      logged values `history["validation_loss"][1][-1]` of
      [`klax.fit_ensemble`][]), or a function `member -> scalar` that is
      evaluated for every member (vmapped), e.g.
      `lambda m: klax.mse(m, test_data, None)`.
    - `minimize`: pick the lowest score (default) or, if False, the highest.
      (Keyword only argument.)

    Non-finite scores (e.g. of members frozen by the non-finite guard) never
    win.

    **Returns:**

    `(member, index)`: the chosen member as an ordinary model and its index.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 3, key=jr.key(0))
        >>> member, index = klax.best_member(ensemble, [0.3, 0.1, float("nan")])
        >>> index
        1
    """
    n = ensemble_size(ensemble)
    if callable(score):
        values = eqx.filter_jit(eqx.filter_vmap(score))(ensemble)
    else:
        values = score
    try:
        values = np.asarray(jax.device_get(values), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            "`klax.best_member(score=...)` must be an array-like of one score per "
            f"member or a function `member -> scalar`; got {score!r}."
        ) from None
    if values.shape != (n,):
        raise ValueError(
            f"`klax.best_member(score=...)` must give one score per member, shape "
            f"({n},); got shape {values.shape}."
        )
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(
            f"`klax.best_member`: no member has a finite score; got {values.tolist()}."
        )
    fill = np.inf if minimize else -np.inf
    values = np.where(finite, values, fill)
    index = int(np.argmin(values) if minimize else np.argmax(values))
    return ensemble_member(ensemble, index), index


# ---------------------------------------------------------------------------
# Samplers for members: member m's batch at step i


class _PerMember(eqx.Module):
    """Draws member `m`'s batch from the chunk's shared and per-member sources.

    Layouts: `"table"` (the default batcher on device: shared `(data_leaves,
    first)`, per member its permutation table), `"stacked"` (host batches:
    shared non-array leaves, per member the stacked arrays) and `"constant"`
    (nothing batched: every member gets the shared data).
    """

    inner: Any
    layout: str = eqx.field(static=True)

    def draw(self, shared: Any, own: Any, i: Int[Array, ""]) -> PyTree:
        if self.layout == "table":
            leaves, first = shared
            return self.inner.draw((leaves, own, first), i)
        if self.layout == "stacked":
            return self.inner.draw((own, shared), i)
        return self.inner.draw(shared, i)


class _Layout(eqx.Module):
    """Static configuration of a members' chunk: sampling, vmap and sharding."""

    sampler: _PerMember
    run_state_axis: int | None = eqx.field(static=True)
    mesh: Any = eqx.field(static=True)
    member_axes: tuple[str, ...] | None = eqx.field(static=True)


Health = tuple[Bool[Array, " N"], Int[Array, " N"], Int[Array, " N"]]


@eqx.filter_jit
def _run_members(
    state_leaves: list[Any],
    state_treedef: Any,
    layout: _Layout,
    shared: Any,
    own: Any,
    health: Health,
    num_steps: Int[Array, ""],
    loss: Loss,
    optimizer: optax.GradientTransformationExtraArgs,
) -> tuple[list[Any], Int[Array, ""], Health, Bool[Array, ""]]:
    """Run up to `num_steps` vmapped updates of all members in one while loop.

    `health = (alive, stop_step, reason)` per member. A member whose update
    gives a non-finite loss or non-finite parameters is frozen: it keeps its
    state from before that update for the rest of the run, `stop_step` records
    the step of the rejected update and `reason` why. Frozen members still
    compute (vmapped), but their results are discarded. The loop ends early
    once no member is alive.

    Returns the new state leaves, the number of updates done (iterations in
    which some member was updated), the new health and whether any member is
    still alive.
    """
    state = jax.tree.unflatten(state_treedef, state_leaves)
    dynamic, static = eqx.partition((state.model, state.opt_state), eqx.is_array)
    rs_dynamic, rs_static = eqx.partition(state.run_state, eqx.is_array)
    step0 = state.step

    def update(dynamic, own, rs_dynamic, i, step):
        model, opt_state = eqx.combine(dynamic, static)
        run_state = eqx.combine(rs_dynamic, rs_static)
        batch = layout.sampler.draw(shared, own, i)
        old = TrainingState(model, opt_state, run_state, step)
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
        params_ok = _all_finite(eqx.filter(new.model, eqx.is_inexact_array))
        return new_dynamic, jnp.isfinite(value), params_ok

    members_update = jax.vmap(
        update,
        in_axes=(0, None if own is None else 0, layout.run_state_axis, None, None),
        spmd_axis_name=layout.member_axes,
    )

    def select(mask, new, old):
        def pick(a, b):
            return jnp.where(jnp.reshape(mask, mask.shape + (1,) * (a.ndim - 1)), a, b)

        return jax.tree.map(pick, new, old)

    def cond(carry):
        i, _, _, alive, _, _ = carry
        return (i < num_steps) & jnp.any(alive)

    def body(carry):
        i, done, dynamic, alive, stop_step, reason = carry
        step = step0 + done
        new_dynamic, loss_ok, params_ok = members_update(
            dynamic, own, rs_dynamic, i, step
        )
        ok = loss_ok & params_ok
        accept = alive & ok
        dynamic = select(accept, new_dynamic, dynamic)
        if layout.member_axes is not None:
            dynamic = _sharding.constrain_leading(
                dynamic, layout.mesh, layout.member_axes
            )
        failed = alive & ~ok
        stop_step = jnp.where(failed, step + 1, stop_step)
        code = jnp.where(loss_ok, NONFINITE_PARAMS, NONFINITE_LOSS)
        reason = jnp.where(failed, code, reason).astype(reason.dtype)
        done = done + jnp.any(accept).astype(done.dtype)
        return i + 1, done, dynamic, accept, stop_step, reason

    alive, stop_step, reason = health
    zero = jnp.array(0, jnp.int32)
    init = (zero, zero, dynamic, alive, stop_step, reason)
    _, done, dynamic, alive, stop_step, reason = jax.lax.while_loop(cond, body, init)
    model, opt_state = eqx.combine(dynamic, static)
    new_state = TrainingState(model, opt_state, state.run_state, step0 + done)
    health = (alive, stop_step, reason)
    return jax.tree.leaves(new_state), done, health, jnp.any(alive)


@ft.partial(jax.jit, static_argnums=(1, 2, 3))
def _member_tables(
    keys: PRNGKeyArray, n: int, epochs: int, sharding: Any
) -> tuple[Int[Array, "N epochs n"], PRNGKeyArray]:
    """`_permutation_table` for each member's key (one row of keys per member)."""
    keys, next_keys = jax.vmap(lambda k: epoch_keys(k, epochs))(keys)
    table = permutations(keys, n)
    if sharding is not None:
        table = jax.lax.with_sharding_constraint(table, sharding)
    return table, next_keys


_skip_epochs = jax.jit(jax.vmap(_split_n_times, in_axes=(0, None)))

# ---------------------------------------------------------------------------
# Feeders: the host side. Both hold the members' health between chunks.


class _MemberFeeder:
    health: Health
    exhausted: bool

    def __init__(self, n: int, layout_args: dict[str, Any]):
        self.n = n
        self.layout_args = layout_args
        self.exhausted = False
        health = (
            jnp.ones((n,), bool),
            jnp.zeros((n,), jnp.int32),
            jnp.full((n,), OK, jnp.int32),
        )
        self.health = self._place_members(health)

    def _place_members(self, tree: PyTree) -> PyTree:
        mesh, axes = self.layout_args["mesh"], self.layout_args["member_axes"]
        if mesh is None:
            return tree
        if axes is None:
            return _sharding.replicate(tree, mesh)
        return _sharding.split_leading(tree, mesh, axes)

    def _place_shared(self, tree: PyTree) -> PyTree:
        mesh = self.layout_args["mesh"]
        return tree if mesh is None else _sharding.replicate(tree, mesh)

    def _run(
        self,
        sampler: _PerMember,
        shared: Any,
        own: Any,
        state_leaves: list[Any],
        state_treedef: Any,
        num_steps: int,
        loss: Loss,
        optimizer: optax.GradientTransformationExtraArgs,
    ) -> tuple[list[Any], int, int]:
        layout = _Layout(sampler, **self.layout_args)
        leaves, done, health, any_alive = _run_members(
            state_leaves,
            state_treedef,
            layout,
            shared,
            own,
            self.health,
            jnp.asarray(num_steps, jnp.int32),
            loss,
            optimizer,
        )
        self.health = health
        done, any_alive = jax.device_get((done, any_alive))
        return leaves, int(done), OK if any_alive else NONFINITE_LOSS

    def report(self) -> tuple[list[int | None], list[str | None]]:
        """Per member: the step of its rejected update and why (None if none)."""
        health = self.health
        if self.layout_args["mesh"] is not None:  # readable on every host
            health = _sharding.gather(health, self.layout_args["mesh"])
        alive, stop_step, reason = (np.asarray(x) for x in jax.device_get(health))
        steps = [None if a else int(s) for a, s in zip(alive, stop_step, strict=True)]
        reasons = [
            None if a else STOP_REASONS[int(r)]
            for a, r in zip(alive, reason, strict=True)
        ]
        return steps, reasons


class _MemberDeviceFeeder(_MemberFeeder):
    """Each member's `klax.batch_data` batches, drawn on the device.

    Member `m` gets exactly the batches `batch_data(data, batch_size,
    batch_axes, key=keys[m])` yields, `offset` batches skipped.
    """

    def __init__(
        self,
        data: PyTree,
        batch_size: int,
        batch_axes: PyTree,
        keys: PRNGKeyArray,
        offset: int,
        steps: int,
        layout_args: dict[str, Any],
    ):
        n_members = int(keys.shape[0])
        super().__init__(n_members, layout_args)
        plan = plan_device_batches(data, batch_size, batch_axes, self._place_shared)
        if plan.constant:
            self.sampler = _PerMember(_Constant(), "constant")
            self.data = jax.tree.unflatten(plan.treedef, plan.leaves)
            return
        n = plan.n
        self.sampler = _PerMember(
            _DeviceBatchData(plan.treedef, plan.axes, n, plan.batch_size), "table"
        )
        self.leaves = plan.leaves
        self.n_samples = n
        self.per_epoch = n // plan.batch_size
        skipped_epochs, self.position = divmod(offset, self.per_epoch)
        self.epochs = table_epochs(n, self.per_epoch, self.position + steps, n_members)
        keys = self._place_members(keys)
        self.next_keys = _skip_epochs(keys, jnp.asarray(skipped_epochs))
        mesh, member_axes = layout_args["mesh"], layout_args["member_axes"]
        self.table_sharding = (
            None
            if mesh is None
            else _sharding.replicated(mesh)
            if member_axes is None
            else _sharding.along(mesh, member_axes, 0, 3)
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
        if self.sampler.layout == "constant":
            return self._run(
                self.sampler,
                self.data,
                None,
                state_leaves,
                state_treedef,
                num_steps,
                loss,
                optimizer,
            )
        capacity = self.epochs * self.per_epoch
        if self.table is None or self.position >= capacity:
            if self.table is not None:
                self.position -= capacity
            self.table, self.next_keys = _member_tables(
                self.next_keys, self.n_samples, self.epochs, self.table_sharding
            )
        shared = (self.leaves, jnp.asarray(self.position, jnp.int32))
        leaves, done, status = self._run(
            self.sampler,
            shared,
            self.table,
            state_leaves,
            state_treedef,
            min(num_steps, capacity - self.position),
            loss,
            optimizer,
        )
        self.position += done
        return leaves, done, status


class _MemberHostFeeder(_MemberFeeder):
    """Batches from `context.batch_generator`, which yields one batch per member.

    Consecutive steps whose batches agree (across members too) in structure,
    shapes, dtypes and non-array leaves are stacked into arrays of shape
    `(N, chunk, ...)` and transferred at once.
    """

    def __init__(
        self,
        context: TrainingContext,
        n_members: int,
        chunk: int,
        offset: int,
        layout_args: dict[str, Any],
    ):
        super().__init__(n_members, layout_args)
        self.context = context
        self.chunk = max(1, chunk)
        self.pending: list[tuple[Any, ...]] = []
        for _ in range(offset):
            if self._next() is None:
                break

    def _next(self) -> tuple[Any, ...] | None:
        if self.pending:
            return self.pending.pop()
        try:
            batches = tuple(next(self.context.batch_generator))
        except StopIteration:
            self.exhausted = True
            return None
        if len(batches) != self.n:
            raise ValueError(
                f"The ensemble's batch generator must yield one batch per member "
                f"({self.n}); got {len(batches)}."
            )
        return batches

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
        signature = _batch_signature(first[0])
        if not all(_same(_batch_signature(b), signature) for b in first[1:]):
            raise ValueError(
                "The members' batches of one step differ in structure, shape, dtype "
                "or non-array leaves; `klax.fit_ensemble` needs batches that can "
                "be stacked across members."
            )
        group = [first]
        nbytes = max(
            1,
            sum(
                int(np.prod(np.shape(x))) * _dtype(x).itemsize
                for x in jax.tree.leaves(first[0])
                if eqx.is_array(x)
            ),
        )
        length = min(self.chunk, max(1, _MAX_HOST_CHUNK_BYTES // (self.n * nbytes)))
        while len(group) < min(num_steps, length):
            item = self._next()
            if item is None:
                break
            if not all(_same(_batch_signature(b), signature) for b in item):
                self.pending.append(item)
                break
            group.append(item)
        group = group + [group[-1]] * (length - len(group))
        static = eqx.filter(first[0], eqx.is_array, inverse=True)
        treedef = jax.tree.structure(eqx.filter(first[0], eqx.is_array))
        columns = [
            [jax.tree.leaves(eqx.filter(b, eqx.is_array)) for b in step]
            for step in group
        ]
        stacked_leaves = [
            np.stack(
                [
                    np.stack([np.asarray(columns[k][m][j]) for k in range(length)])
                    for m in range(self.n)
                ]
            )
            for j in range(treedef.num_leaves)
        ]
        stacked = self._place_members(
            jax.tree.unflatten(treedef, [jnp.asarray(x) for x in stacked_leaves])
        )
        return self._run(
            _PerMember(_Stacked(), "stacked"),
            static,
            stacked,
            state_leaves,
            state_treedef,
            min(num_steps, len(columns)),
            loss,
            optimizer,
        )


def _dtype(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.result_type(x)


def _batch_signature(batch: PyTree) -> Any:
    """What must agree for batches to be stacked and share a compilation."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple(
        (np.shape(x), _dtype(x)) if eqx.is_array(x) else ("static", x) for x in leaves
    )


class _MemberBatches:
    """`context.batch_generator` of an ensemble fit: yields one batch per member.

    Member `m`'s batches come from `batcher(data, batch_size, batch_axes,
    key=keys[m])`; the generators are created on first use.
    """

    def __init__(self, batcher, data, batch_size, batch_axes, keys):
        self._args = (batcher, data, batch_size, batch_axes, keys)
        self._generators: list[Any] | None = None

    def __iter__(self) -> "_MemberBatches":
        return self

    def __next__(self) -> tuple[Any, ...]:
        if self._generators is None:
            batcher, data, batch_size, batch_axes, keys = self._args
            self._generators = [
                batcher(data, batch_size, batch_axes, key=keys[m])
                for m in range(keys.shape[0])
            ]
        return tuple(next(g) for g in self._generators)


# ---------------------------------------------------------------------------
# Logging


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
            values = jax.lax.with_sharding_constraint(
                values, _sharding.replicated(mesh)
            )
        return values

    return evaluate


# ---------------------------------------------------------------------------
# fit_ensemble


def _shard_plan(
    mesh: Any, shard: Any, n: int
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The mesh axes the members and the batches are split over."""
    where = "klax.fit_ensemble(shard=...)"
    if isinstance(shard, str):
        if shard not in ("members", "batch"):
            raise ValueError(
                f'`{where}` must be "members", "batch" or a dict '
                '{"members": axes, "batch": axes}; got ' + repr(shard) + "."
            )
        plan = {shard: tuple(mesh.axis_names)}
    elif isinstance(shard, Mapping):
        unknown = set(shard) - {"members", "batch"}
        if unknown:
            raise ValueError(
                f'`{where}` keys must be "members" and/or "batch"; got '
                f"{sorted(map(repr, unknown))}."
            )
        plan = {
            k: _sharding.check_axes(mesh, v, f"{where}[{k!r}]")
            for k, v in shard.items()
            if v is not None
        }
        if set(plan.get("members", ())) & set(plan.get("batch", ())):
            raise ValueError(
                f"`{where}`: a mesh axis cannot split both members and batches; "
                f"got {dict(shard)!r}."
            )
    else:
        raise TypeError(
            f'`{where}` must be "members", "batch" or a dict; got {shard!r}.'
        )
    member_axes = plan.get("members")
    if member_axes is not None:
        devices = _sharding.axes_size(mesh, member_axes)
        if n % devices:
            raise ValueError(
                f"An ensemble of {n} members cannot be split evenly over the "
                f"{devices} devices of the mesh axes {member_axes}: use a number "
                f"of members divisible by {devices}, or shard='batch'."
            )
    return member_axes, plan.get("batch")


def _check_ensemble_opt_state(
    optimizer: Any, params: PyTree, opt_state: PyTree
) -> None:
    expected = jax.eval_shape(eqx.filter_vmap(optimizer.init), params)
    want, got = jax.tree.structure(expected), jax.tree.structure(opt_state)
    if want != got:
        raise ValueError(
            "`klax.fit_ensemble(init_opt_state=...)` does not fit the optimizer and "
            "ensemble: its structure differs from the members' `optimizer.init`. "
            "Pass the `final_opt_state` of an ensemble run with the same optimizer "
            f"and ensemble.\nExpected: {want}\nGot:      {got}"
        )
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(opt_state), strict=True):
        if eqx.is_array(b) and a.shape != jnp.shape(b):
            raise ValueError(
                "`klax.fit_ensemble(init_opt_state=...)` does not fit the ensemble: "
                f"an optimizer state array has shape {jnp.shape(b)} where the "
                f"members' `optimizer.init` gives {a.shape} (member axis first)."
            )


def fit_ensemble(
    ensemble: TModel,
    data: PyTree,
    *,
    batch_size: int = 32,
    batch_axes: PyTree = 0,
    run_state: Any = None,
    validation_data: PyTree = None,
    steps: int = 1000,
    loss: Loss = mse,
    optimizer: optax.GradientTransformation = _DEFAULT_OPTIMIZER,
    init_opt_state: PyTree = None,
    batcher: Batcher = batch_data,
    make_logger: bool = True,
    metrics: Sequence[Metric] | None = None,
    log_every: int = 100,
    verbose: int = 2,
    callbacks: Sequence[Callback] | None = None,
    batch_offset: int = 0,
    run_state_per_member: bool = False,
    mesh: Any = None,
    shard: Any = "members",
    key: PRNGKeyArray,
) -> tuple[TModel, History | None]:
    """Train every member of an ensemble at once; returns ensemble and history.

    All members are trained in one compiled loop: the update of
    [`klax.fit`][] is vmapped over the members, so `N` members cost one
    compilation and one host loop instead of `N`. The members are independent:

    - **Optimizer state.** Each member has its own (`optimizer.init` of its
      parameters, vmapped); `history.final_opt_state` holds them stacked.
    - **Batches.** With `member_keys = jax.random.split(key, N)`, member `i`
      trains on exactly the batches that `klax.fit(member_i, ...,
      key=member_keys[i])` would use, so it ends (up to round-off) where that
      single fit ends. Other batchers are called once per member, with the
      same keys.
    - **Constraints** are applied to each member after each of its updates.
    - **Non-finite guard, per member.** An update that gives a member a
      non-finite loss or non-finite parameters is rejected and *freezes that
      member* at its last finite state; the others train on. Training stops
      early only when every member is frozen. `history.stop_step` and
      `history.stop_reason` are lists with one entry per member: the step of
      its rejected update and why, or `None` if it trained to the end. A
      `RuntimeWarning` lists the frozen members.

    **History.** Every logged value is a NumPy array of length `N`, one entry
    per member: `history["loss"][1][k][i]` is member `i`'s loss at the `k`-th
    logging step. The default metrics `"loss"` and `"validation_loss"`
    evaluate all members on the same batches (those of member 0, so member
    0's history equals its single fit's). With `verbose`, values are shown as
    median (min, max) over the members. User `metrics` and `callbacks`
    receive the context with the whole ensemble as `context.state.model`
    (its arrays have the member axis first; use [`klax.ensemble_member`][]
    or `eqx.filter_vmap`).

    **Resuming** works as for `klax.fit`: pass `history.final_opt_state` as
    `init_opt_state` and `history.total_steps` as `batch_offset` with the
    same `key`.

    **Several devices.** With `mesh` (a `jax.sharding.Mesh`, or `"all"` for a
    one-dimensional mesh over every device), the training is spread over the
    mesh's devices with `NamedSharding` and XLA's automatic partitioning:
    `shard="members"` (default) splits the members over all mesh axes (the
    number of members must be divisible by the number of devices);
    `shard="batch"` replicates the members and splits each batch along its
    batch axis (data parallel; the batch size must be divisible by the number
    of devices); a dict such as `{"members": "m", "batch": "b"}` does both on
    a two-dimensional mesh. The results equal the one-device results up to
    round-off. Across several hosts, call `jax.distributed.initialize()` in
    every process first and build the mesh from `jax.devices()` (all hosts'
    devices); every process runs the same `fit_ensemble` call with the same
    data and key.

    **Arguments:**

    - `ensemble`: the ensemble to train (e.g. from [`klax.make_ensemble`][]),
      not necessarily finalized.
    - `data`, `batch_size`, `batch_axes`, `validation_data`, `steps`, `loss`,
      `optimizer`, `batcher`, `make_logger`, `metrics`, `log_every`,
      `verbose`, `callbacks`, `batch_offset`: as for [`klax.fit`][]; they
      apply to every member.
    - `run_state`: passed to the loss as its third argument. Shared by all
      members, unless `run_state_per_member` is True.
    - `init_opt_state`: the stacked optimizer state to start from, e.g.
      `history.final_opt_state` of an earlier ensemble run.
    - `run_state_per_member`: if True, every array of `run_state` has a
      leading member axis of length `N`, and member `i` receives entry `i`.
    - `mesh`: None (default: nothing changes), a `jax.sharding.Mesh`, or
      `"all"`.
    - `shard`: how to use the mesh: `"members"`, `"batch"` or a dict of mesh
      axes (see above).
    - `key`: a JAX PRNG key. (Keyword only argument.)

    **Returns:**

    `(ensemble, history)`: the trained ensemble (not finalized) and the
    [`klax.History`][], or `(ensemble, None)` with `make_logger=False`.

    Example:
        >>> import jax.numpy as jnp, jax.random as jr, optax
        >>> import klax
        >>> x = jnp.linspace(0.0, 1.0, 8)
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP("scalar", "scalar", [4], key=k), 3, key=jr.key(0))
        >>> ensemble, history = klax.fit_ensemble(
        ...     ensemble, (x, 2.0 * x), batch_size=8, steps=200, log_every=100,
        ...     optimizer=optax.adam(1e-2), verbose=0, key=jr.key(1))
        >>> history["loss"][0], history["loss"][1][-1].shape
        ([0, 100, 200], (3,))
    """
    steps = _check_count(steps, "steps", "klax.fit_ensemble(steps=...)")
    batch_offset = _check_count(
        batch_offset, "batch_offset", "klax.fit_ensemble(batch_offset=...)"
    )
    if not isinstance(loss, Loss):
        raise TypeError(
            "`klax.fit_ensemble(loss=...)` must be a `klax.Loss`, e.g. `klax.mse` "
            f"or a function decorated with `@klax.loss`; got {loss!r}."
        )
    if not (
        callable(getattr(optimizer, "init", None))
        and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            "`klax.fit_ensemble(optimizer=...)` must be an optax optimizer (with "
            f"`init` and `update`), e.g. `optax.adam(1e-3)`; got {optimizer!r}."
        )
    callbacks = _check_callbacks(callbacks)
    n = ensemble_size(ensemble)
    mesh = _sharding.resolve_mesh(mesh, "klax.fit_ensemble")
    member_axes, batch_mesh_axes = (None, None)
    if mesh is not None:
        member_axes, batch_mesh_axes = _shard_plan(mesh, shard, n)
    run_state_axis = 0 if run_state_per_member else None
    if run_state_per_member:
        for x in jax.tree.leaves(run_state):
            if eqx.is_array(x) and (np.ndim(x) == 0 or np.shape(x)[0] != n):
                raise ValueError(
                    "`klax.fit_ensemble(run_state_per_member=True)` needs a leading "
                    f"member axis of length {n} on every array of run_state; got an "
                    f"array of shape {np.shape(x)}."
                )

    params = eqx.filter(ensemble, eqx.is_inexact_array)
    if init_opt_state is None:
        opt_state = eqx.filter_vmap(optimizer.init)(params)
    else:
        _check_ensemble_opt_state(optimizer, params, init_opt_state)
        opt_state = init_opt_state
    model = eqx.filter_vmap(apply)(ensemble)

    member_keys = jr.split(key, n)
    batch_keys = jax.vmap(lambda k: jr.split(k)[0])(member_keys)

    train_loss = loss
    if mesh is not None:
        if member_axes is None:
            model, opt_state = _sharding.replicate((model, opt_state), mesh)
        else:
            model, opt_state = _sharding.split_leading(
                (model, opt_state), mesh, member_axes
            )
        if run_state_per_member and member_axes is not None:
            run_state = _sharding.split_leading(run_state, mesh, member_axes)
        else:
            run_state = _sharding.replicate(run_state, mesh)
        if batch_mesh_axes is not None:
            train_loss = _sharding.BatchShardedLoss(
                loss, mesh, batch_mesh_axes, batch_axes
            )
    batch_generator = _MemberBatches(batcher, data, batch_size, batch_axes, batch_keys)
    context = TrainingContext(
        model, optimizer, opt_state, batch_generator, run_state, train_loss, steps
    )

    logger = None
    if make_logger:
        evaluate = _members_loss(loss, run_state_axis, mesh)
        default_metrics: list[Metric] = [
            BatchMetric(
                "loss",
                evaluate,
                data,
                batcher,
                batch_size,
                batch_axes,
                verbose=True,
                key=batch_keys[0],
            )
        ]
        if validation_data is not None:
            default_metrics.append(
                BatchMetric(
                    "validation_loss",
                    evaluate,
                    validation_data,
                    batcher,
                    4 * batch_size,
                    batch_axes,
                    verbose=True,
                    key=batch_keys[0],
                )
            )
        logger = _EnsembleLogger(
            log_every, [*default_metrics, *(metrics or [])], verbose
        )
        callbacks.append(logger)

    layout_args = {
        "run_state_axis": run_state_axis,
        "mesh": mesh,
        "member_axes": member_axes,
    }
    if batcher is batch_data:
        feeder: Any = _MemberDeviceFeeder(
            data,
            _check_batch_size(batch_size),
            batch_axes,
            batch_keys,
            batch_offset,
            steps,
            layout_args,
        )
        run_loop(context, callbacks, lambda periods: feeder)
    else:
        built: list[_MemberFeeder] = []

        def make_feeder(periods):
            built.append(
                _MemberHostFeeder(
                    context, n, host_chunk(periods, steps), batch_offset, layout_args
                )
            )
            return built[0]

        run_loop(context, callbacks, make_feeder)
        feeder = built[0]

    stop_steps, reasons = feeder.report()
    _warn_frozen(stop_steps, reasons, steps)
    if logger is None:
        return context.state.model, None
    history = logger.history
    history.stop_step = stop_steps
    history.stop_reason = reasons
    return context.state.model, history


def _warn_frozen(
    stop_steps: list[int | None], reasons: list[str | None], steps: int
) -> None:
    frozen = [i for i, s in enumerate(stop_steps) if s is not None]
    if not frozen:
        return
    shown = ", ".join(
        f"member {i} at step {stop_steps[i]} ({reasons[i]})" for i in frozen[:5]
    )
    more = f", and {len(frozen) - 5} more" if len(frozen) > 5 else ""
    warnings.warn(
        f"{len(frozen)} of {len(stop_steps)} ensemble members were frozen by the "
        f"non-finite guard: {shown}{more}. Each keeps its parameters and optimizer "
        "state from before the rejected update; the other members trained on "
        f"(to step {steps} at most). See history.stop_step / history.stop_reason. "
        "Lower the learning rate, check the data and the loss for NaN/inf, or "
        "clip gradients (e.g. optax.clip_by_global_norm).",
        RuntimeWarning,
        stacklevel=3,
    )
