"""The state a training loop carries (`TrainingState`) and what callbacks see."""

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PyTree

from ._losses import Loss
from ._misc import with_extra_args


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainingState:
    """Everything one training step updates: a mutable dataclass, a JAX pytree.

    Its children are the four fields, in this order.

    **Arguments:**

    - `model`: the model being trained (wrappers such as `klax.NonNegative`
      still in place).
    - `opt_state`: the optimizer state (`optimizer.init(params)`).
    - `run_state`: the loss's third argument, carried along unchanged (may be
      `None`).
    - `step`: the number of updates done so far, a 0-d integer JAX array.
    """

    model: Any
    opt_state: PyTree
    run_state: Any
    step: Int[Array, ""]


class TrainingContext:
    """The training state plus everything a run keeps fixed; callbacks receive it.

    Callbacks may change the current state, `context.state`, for the
    following updates, by assigning a new one (`context.state =
    dataclasses.replace(context.state, run_state=r)`) or its fields in place
    (`context.state.model = m`); its pytree structure must stay the same (else
    `ValueError`). Custom loops may use the flattened state, `_state_leaves`
    and `_state_treedef` (what [`klax.make_step`][] takes and returns), and
    [`update_state`][klax.TrainingContext.update_state].

    After a run, `stop_step` and `stop_reason` say whether and why the loop
    stopped early at a non-finite update (else `None`; after
    [`klax.fit_ensemble`][], lists with one entry per member).
    """

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

        The state starts at step `jnp.array(0, dtype=jnp.int32)`.
        """
        self.optimizer = with_extra_args(optimizer)
        self.loss = loss
        self.batch_generator = batch_generator
        self.steps = steps
        self.stop_step: int | list[int | None] | None = None
        self.stop_reason: str | list[str | None] | None = None
        # The state: a `TrainingState` (`_state`) or, from `update_state` to the
        # next access of `state`, leaves.
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
        """Replace the flattened state by `leaves` (same structure and order)."""
        leaves = list(leaves)
        if len(leaves) != self._state_treedef.num_leaves:
            raise ValueError(
                f"update_state expects {self._state_treedef.num_leaves} leaves "
                f"(the flattened training state); got {len(leaves)}."
            )
        self._leaves = leaves
        self._state = None
