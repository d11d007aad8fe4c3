"""Training: one update step, the callback loop around it, and `fit`."""

import functools as ft
from collections.abc import Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import optax
from jaxtyping import PRNGKeyArray, PyTree

from ._callbacks import Callback
from ._datahandler import Batcher, batch_data
from ._logging import History, Metric
from ._loop import (
    DEFAULT_OPTIMIZER,
    HostFeeder,
    Layout,
    run_loop,
    train,
    train_step,
    warn_stop,
)
from ._losses import Loss, mse
from ._misc import check_callbacks, check_int, compose_doc, with_extra_args
from ._trainstate import TrainingContext

TModel = TypeVar("TModel", bound=eqx.Module)

# Documentation shared by `run_training_loop`, `fit` and `fit_ensemble`.
FIT_DOCS = {
    "guard": """
        **Non-finite guard.** An update that gives a non-finite loss or
        non-finite parameters is rejected and training stops: the state of the
        step before is kept, `stop_step` and `stop_reason` say at which step
        and why, and a `RuntimeWarning` names the step.
    """,
    "resuming": """
        **Resuming.** Training `N` steps and then `M` more with

        ```python
        model, hist = klax.fit(model, data, steps=N, key=key)
        model, hist2 = klax.fit(model, data, steps=M, key=key,
                                init_opt_state=hist.final_opt_state,
                                batch_offset=hist.total_steps)
        hist.extend(hist2)
        ```

        continues the batch sequence (same `key`, used batches skipped) and
        the optimizer state: the parameters equal those of `N + M`
        uninterrupted steps (bit for bit on the same device; a run depends only
        on `key` and data). The second run's steps start at 0; `extend` shifts
        them.
    """,
    "hosts": """
        For several hosts, call `jax.distributed.initialize()` in every
        process, build the mesh from `jax.devices()` (all hosts' devices) and
        run the same call, with the same data and key, in every process.
    """,
    "keywords": """
        - `data`: the training data, a pytree of arrays (for the default loss
          a pair `(x, y)`), or `None` if the loss needs no data.
        - `batch_size`: samples per batch (at most the data size).
        - `batch_axes`: the batch axis of the data's arrays, a prefix of
          `data` with int or `None` leaves (see [`klax.batch_data`][]).
        - `run_state`: passed to the loss as its third argument (may be
          `None`).
        - `validation_data`: data for the logged `"validation_loss"`.
        - `steps`: the number of updates (an int >= 0).
        - `loss`: a [`klax.Loss`][]; defaults to [`klax.mse`][].
        - `optimizer`: an optax optimizer; defaults to `optax.adam(1e-3)`.
        - `init_opt_state`: the optimizer state to start from (stacked, for
          an ensemble), e.g. `history.final_opt_state` of an earlier run.
        - `batcher`: a [`klax.Batcher`][]; defaults to [`klax.batch_data`][].
        - `make_logger`: whether to log metrics into a [`klax.History`][].
          With False, `metrics`, `log_every` and `verbose` have no effect and
          the returned history is `None`.
        - `metrics`: more [`klax.Metric`][]s to log.
        - `log_every`: log at every step divisible by this (and at step 0).
        - `verbose`: 0 (silent), 1 (print a line per log) or 2 (a tqdm
          progress bar).
        - `callbacks`: [`klax.Callback`][]s, called in order before the
          logger.
        - `batch_offset`: the number of batches of the sequence given by `key`
          to skip before training; pass `history.total_steps` of the previous
          run to resume exactly. (Keyword only argument.)
    """,
}


@eqx.filter_jit
def make_step(
    state_leaves: list[Any],
    state_treedef: Any,
    batch: PyTree,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    return_loss: bool = False,
) -> tuple[list[Any], Any] | tuple[list[Any], Any, Any]:
    """One compiled training update on the flattened training state.

    The loss and its gradient, an optimizer update (with `value`, `grad` and
    `value_fn` as extra arguments, for line-search and value-based optimizers
    such as `optax.lbfgs` or `optax.contrib.reduce_on_plateau`), the model's
    constraints re-applied (`klax.apply`), the step incremented: the update
    that [`klax.fit`][] runs, fused into a compiled loop.

    **Arguments:**

    - `state_leaves`, `state_treedef`: a [`klax.TrainingState`][] flattened,
      `jax.tree.flatten(state)`.
    - `batch`: the batch handed to the loss.
    - `loss`: a [`klax.Loss`][].
    - `optimizer`: an optax optimizer (wrapped with
      `optax.with_extra_args_support` if it does not take extra arguments).
    - `return_loss`: also return the loss of `batch` before the update (the
      one the gradient is of), for a custom loop to log. (Keyword only
      argument.)

    **Returns:**

    `(new_leaves, treedef)`: the updated state flattened (a list, leaf by leaf
    like `state_leaves`) and its tree definition (equal to `state_treedef`);
    with `return_loss=True`, `(new_leaves, treedef, loss)`.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp, jax.random as jr, optax
        >>> import klax
        >>> model = klax.nn.Linear("scalar", "scalar", jr.normal, key=jr.key(0))
        >>> optimizer = optax.sgd(0.1)
        >>> opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        >>> state = klax.TrainingState(model, opt_state, None, jnp.array(0))
        >>> leaves, treedef = jax.tree.flatten(state)
        >>> batch = (jnp.linspace(0.0, 1.0, 4), jnp.linspace(0.0, 2.0, 4))
        >>> leaves, treedef, value = klax.make_step(
        ...     leaves, treedef, batch, klax.mse, optimizer, return_loss=True)
        >>> int(jax.tree.unflatten(treedef, leaves).step), value.shape
        (1, ())
    """
    state = jax.tree.unflatten(state_treedef, state_leaves)
    new_state, value = train_step(state, batch, loss, with_extra_args(optimizer))
    new_leaves, treedef = jax.tree.flatten(new_state)
    return (new_leaves, treedef, value) if return_loss else (new_leaves, treedef)


@compose_doc(guard=FIT_DOCS["guard"])
def run_training_loop(
    context: TrainingContext, callbacks: Sequence[Callback]
) -> TrainingContext:
    """Train until `context.steps` updates are done, calling the callbacks.

    1. `on_training_start(context)` of every callback, in order.
    2. While the step is below `context.steps` and the batch generator yields:
       one update with the next batch (that of [`klax.make_step`][]), then
       `on_training_step(context)` of every callback (all of them, even after
       one requested a stop); stop if any returned a truthy value.
    3. `on_training_end(context)` of every callback.

    Changes callbacks make to `context.state` take effect for the following
    updates. The updates between two callback calls run as one compiled loop
    (batches transferred a chunk at a time); a callback runs only at the steps
    it needs (see `call_every` in [`klax.Callback`][]).

    {{guard}}

    **Arguments:**

    - `context`: the [`klax.TrainingContext`][] to train.
    - `callbacks`: a sequence of [`klax.Callback`][]s.

    **Returns:**

    The same `context` object, holding the final state.
    """
    callbacks = check_callbacks(callbacks)
    check_int(context.steps, "`klax.run_training_loop(context)`: context.steps")
    layout = Layout()
    feeder = ft.partial(HostFeeder, context, offset=0, layout=layout)
    run_loop(context, callbacks, feeder, layout)
    warn_stop(context, stacklevel=2)
    return context


@compose_doc(**FIT_DOCS)
def fit(
    model: TModel,
    data: PyTree,
    *,
    batch_size: int = 32,
    batch_axes: PyTree = 0,
    run_state: Any = None,
    validation_data: PyTree = None,
    steps: int = 1000,
    loss: Loss = mse,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    init_opt_state: PyTree = None,
    batcher: Batcher = batch_data,
    make_logger: bool = True,
    metrics: Sequence[Metric] | None = None,
    log_every: int = 100,
    verbose: int = 2,
    callbacks: Sequence[Callback] | None = None,
    batch_offset: int = 0,
    mesh: Any = None,
    key: PRNGKeyArray,
) -> tuple[TModel, History | None]:
    """Train `model` on `data` with an optax optimizer; returns model and history.

    The updates between two points where Python must run (the logger every
    `log_every` steps, callbacks) run as one compiled loop. The batches of the
    default batcher, [`klax.batch_data`][], are drawn on the device, exactly
    those it yields for the same key (a full batch, `batch_size >= n`, is the
    data as stored: a loss over the samples changes only by round-off); any
    other `batcher` is drained on the host, a chunk at a time, in order.

    Procedure: the optimizer state is `optimizer.init` of the model's inexact
    arrays (or `init_opt_state`); constraints are applied (`klax.apply`);
    `bkey, key = jr.split(key)` and the batches come from `batcher(data,
    batch_size, batch_axes, key=bkey)`; the callbacks run in order, then a
    [`klax.MetricLogger`][] (if `make_logger`) logging `"loss"` (a
    [`klax.BatchMetric`][] of `loss` on `data`, with `bkey`),
    `"validation_loss"` (on `validation_data`, `4 * batch_size`, if given) and
    `metrics` (replacing a default one of the same name). Then
    [`klax.run_training_loop`][] semantics apply, each update that of
    [`klax.make_step`][].

    {{guard}} The returned model and `history.final_opt_state` are those of
    the last finite step (`history.stop_step` and `stop_reason` are `None`
    after a normal run).

    {{resuming}}

    **Several devices.** With `mesh`, training is data parallel: the model and
    optimizer state are replicated and each batch is split along its batch
    axis over all mesh axes (the batch size divisible by the number of
    devices). The results equal the one-device results up to round-off.
    {{hosts}} For many models at once, see [`klax.fit_ensemble`][].

    **Arguments:**

    - `model`: the model (an Equinox module; may contain wrappers and
      constraints). It need not be finalized.
    {{keywords}}
    - `mesh`: None (one device; the default), a `jax.sharding.Mesh`, or
      `"all"` (a one-dimensional mesh over every device). (Keyword only
      argument.)
    - `key`: a JAX PRNG key for the batches. (Keyword only argument.)

    **Returns:**

    `(model, history)`: the trained model (not finalized) and the
    [`klax.History`][], or `(model, None)` with `make_logger=False`.

    Example:
        >>> import jax.numpy as jnp, jax.random as jr, optax
        >>> import klax
        >>> x = jnp.linspace(0.0, 1.0, 8)
        >>> model = klax.nn.MLP("scalar", "scalar", [4], key=jr.key(0))
        >>> model, history = klax.fit(
        ...     model, (x, 2.0 * x), batch_size=8, steps=200, log_every=100,
        ...     optimizer=optax.adam(1e-2), verbose=0, key=jr.key(1))
        >>> history["loss"][0], history.total_steps
        ([0, 100, 200], 200)
    """
    return train(where="klax.fit", members=None, **locals())
