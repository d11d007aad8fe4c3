"""Callbacks: hooks that run in Python around the training loop."""

from abc import ABC
from typing import Any

from ._misc import check_int


class Callback(ABC):  # noqa: B024 (every hook is optional, none is abstract)
    """Base of training callbacks: three hooks that do nothing by default.

    Override any subset of `on_training_start`, `on_training_step` and
    `on_training_end`. `Callback` keeps no state and has no `__init__`, so a
    subclass may define its own `__init__` without calling `super().__init__()`.
    Callbacks run on the host, outside jit, and receive the
    [`TrainingContext`][klax.TrainingContext].

    **Staying on the fast path.** Training runs the updates between two
    callback calls as one compiled loop. A subclass that does not override
    `on_training_step` costs nothing; one that does is called after every
    update, unless it sets `call_every` (a class or instance attribute, an int
    `k >= 1`): then only at steps divisible by `k`, and the updates in between
    stay in the compiled loop ([`klax.MetricLogger`][] has `call_every ==
    log_every`).

    Example:
        >>> import klax
        >>> class PrintEvery1000(klax.Callback):
        ...     call_every = 1000
        ...
        ...     def on_training_step(self, context):
        ...         print(int(context.state.step))
    """

    call_every: int | None = None

    def on_training_start(self, context: Any) -> None:  # noqa: B027
        """Called once before the first update (at the initial step)."""

    def on_training_step(self, context: Any) -> bool | None:  # noqa: B027
        """Called after an update (see `call_every`); truthy to request a stop."""

    def on_training_end(self, context: Any) -> None:  # noqa: B027
        """Called once when training ends."""


def step_period(callback: Any) -> int | None:
    """Call `on_training_step` at steps divisible by this (`call_every`, 1), or None."""
    if isinstance(callback, Callback) and (
        type(callback).on_training_step is Callback.on_training_step
    ):
        return None
    every = getattr(callback, "call_every", None)
    if every is None:
        return 1
    return check_int(every, f"`call_every` of the callback {callback!r}", minimum=1)
