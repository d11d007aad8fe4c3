"""Callbacks: hooks that run in Python around the training loop."""

from abc import ABC
from typing import Any


class Callback(ABC):  # noqa: B024 (no abstract methods: every hook is optional)
    """Base of training callbacks: three hooks that do nothing by default.

    Override any subset of `on_training_start`, `on_training_step` and
    `on_training_end`. `Callback` keeps no state and has no `__init__`, so a
    subclass may define its own `__init__` without calling `super().__init__()`.
    Callbacks run on the host, outside jit, and receive the `TrainingContext`.
    """

    def on_training_start(self, context: Any) -> None:
        """Called once before the first update (at the initial step)."""

    def on_training_step(self, context: Any) -> bool | None:
        """Called after an update; return a truthy value to request a stop."""

    def on_training_end(self, context: Any) -> None:
        """Called once when training ends."""
