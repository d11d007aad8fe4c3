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

    **Staying on the fast path.** [`klax.fit`][] and
    [`klax.run_training_loop`][] run the updates between two callback calls as
    one compiled loop, so they only return to Python at steps where some
    callback must run. A subclass that does not override `on_training_step`
    costs nothing. One that overrides it is called after every update, unless
    it sets the attribute `call_every` (a class or instance attribute, an int
    `k >= 1`): then `on_training_step` is called only at steps divisible by
    `k`, and the `k - 1` updates in between run without leaving the compiled
    loop. ([`klax.MetricLogger`][] has `call_every == log_every`.)

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
        """Called after an update; return a truthy value to request a stop.

        Called after every update, or only at steps divisible by `call_every`
        if the callback sets that attribute.
        """

    def on_training_end(self, context: Any) -> None:  # noqa: B027
        """Called once when training ends."""


def step_period(callback: Any) -> int | None:
    """How often `callback.on_training_step` must be called.

    `None` if never (a `Callback` subclass that does not override it), else
    `k >= 1`: call at every step divisible by `k` (`call_every`, or 1 when not
    given).
    """
    if isinstance(callback, Callback) and (
        type(callback).on_training_step is Callback.on_training_step
    ):
        return None
    every = getattr(callback, "call_every", None)
    if every is None:
        return 1
    return check_int(every, f"`call_every` of the callback {callback!r}", minimum=1)
