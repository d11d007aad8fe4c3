"""The state a training loop carries, and the context callbacks see.

[`TrainingState`][klax.TrainingState] is the pytree one update maps to the next:
the model, the optimizer state, a user `run_state` and the step counter.
[`TrainingContext`][klax.TrainingContext] holds that state together with what
does not change during a run (optimizer, loss, batches, number of steps); it is
what callbacks and metrics receive.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PyTree

from ._losses import Loss


@dataclasses.dataclass
class TrainingState:
    """The pytree of everything one training step updates.

    A mutable dataclass registered as a JAX pytree; all four fields are
    children, in the order `model`, `opt_state`, `run_state`, `step`.

    **Arguments:**

    - `model`: the model being trained (wrappers such as `klax.NonNegative`
      still in place).
    - `opt_state`: the optimizer state (`optimizer.init(params)`).
    - `run_state`: any object the loss receives as its third argument and that
      training carries along unchanged (may be `None`).
    - `step`: the number of updates done so far, a 0-d integer JAX array.
    """

    model: Any
    opt_state: PyTree
    run_state: Any
    step: Int[Array, ""]


jax.tree_util.register_dataclass(
    TrainingState,
    data_fields=["model", "opt_state", "run_state", "step"],
    meta_fields=[],
)


class TrainingContext:
    """The training state plus everything a run keeps fixed; callbacks receive it.

    The current state is `context.state`. Callbacks may change it, and the
    change takes effect for the following updates, either by assigning a new
    state (`context.state = dataclasses.replace(context.state, run_state=r)`)
    or by assigning fields of the state in place (`context.state.model = m`).
    The pytree structure must stay the same (same model layout, same optimizer
    state layout); otherwise `ValueError` is raised.

    Internally the state is stored flattened, as `_state_leaves` (a list) and
    `_state_treedef`, the form [`klax.make_step`][] takes and returns; custom
    loops may use these two and [`update_state`][klax.TrainingContext.update_state].

    After a run, `stop_step` and `stop_reason` say whether the loop stopped
    early because an update produced a non-finite loss or non-finite parameters
    (both `None` otherwise; after [`klax.fit_ensemble`][], lists with one entry
    per member).
    """

    optimizer: optax.GradientTransformationExtraArgs
    loss: Loss
    batch_generator: Iterator[PyTree]
    steps: int
    stop_step: int | list[int | None] | None
    stop_reason: str | list[str | None] | None

    def __init__(
        self,
        model: Any,
        optimizer: optax.GradientTransformation,
        opt_state: PyTree,
        batch_generator: Iterator[PyTree],
        run_state: Any,
        loss: Loss,
        steps: int,
    ):
        """**Arguments:**

        - `model`: the model to train.
        - `optimizer`: an optax optimizer. One without extra-argument support is
          wrapped with `optax.with_extra_args_support` (stored wrapped).
        - `opt_state`: the optimizer state to start from.
        - `batch_generator`: an iterator of batches.
        - `run_state`: the loss's third argument, carried along (may be `None`).
        - `loss`: a [`klax.Loss`][].
        - `steps`: the total number of updates to run.

        The initial state is `TrainingState(model, opt_state, run_state,
        jnp.array(0, dtype=jnp.int32))`.
        """
        if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
            optimizer = optax.with_extra_args_support(optimizer)
        self.optimizer = optimizer
        self.loss = loss
        self.batch_generator = batch_generator
        self.steps = steps
        self.stop_step = None
        self.stop_reason = None
        # The state is held either as a `TrainingState` object (`_state`) or,
        # after `update_state` and until the next access of `state`, as leaves.
        self._state: TrainingState | None = TrainingState(
            model, opt_state, run_state, jnp.array(0, dtype=jnp.int32)
        )
        self._leaves: list[Any] = []
        self._state_treedef: Any = jax.tree.structure(self._state)

    def _check_structure(self, treedef: Any) -> None:
        if treedef != self._state_treedef:
            raise ValueError(
                "PyTree structure of state changed. A callback may replace the "
                "values of the training state (model parameters, optimizer state, "
                "run_state, step) but not its structure.\n"
                f"Expected: {self._state_treedef}\nGot:      {treedef}"
            )

    @property
    def _state_leaves(self) -> list[Any]:
        """The flattened current state (honours in-place edits of `state`)."""
        if self._state is None:
            return self._leaves
        leaves, treedef = jax.tree.flatten(self._state)
        self._check_structure(treedef)
        return leaves

    @_state_leaves.setter
    def _state_leaves(self, leaves: list[Any]) -> None:
        self.update_state(leaves)

    @property
    def state(self) -> TrainingState:
        """The current [`TrainingState`][klax.TrainingState]."""
        state = self._state
        if state is None:
            state = self._state = jax.tree.unflatten(self._state_treedef, self._leaves)
            self._leaves = []
        return state

    @state.setter
    def state(self, new_state: TrainingState) -> None:
        self._check_structure(jax.tree.structure(new_state))
        self._state = new_state

    def update_state(self, leaves: list[Any]) -> None:
        """Replace the flattened state by `leaves` (same structure, same order).

        The `TrainingState` object is rebuilt lazily on the next access of
        `state`.
        """
        leaves = list(leaves)
        if len(leaves) != self._state_treedef.num_leaves:
            raise ValueError(
                f"update_state expects {self._state_treedef.num_leaves} leaves "
                f"(the flattened training state); got {len(leaves)}."
            )
        self._leaves = leaves
        self._state = None
