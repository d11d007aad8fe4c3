"""Logging during training: metrics, the `History` they fill, and the logger."""

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray, PyTree

from ._callbacks import Callback
from ._datahandler import Batcher
from ._misc import check_callable, check_int, check_str, describe, invalid

F = TypeVar("F", bound=Callable[..., Any])


@runtime_checkable
class Metric(Protocol):
    """A quantity logged during training.

    Any callable with a `name: str` and a `verbose: bool` attribute: called
    with the training context (anything with a `state` holding `model` and
    `run_state`), it may return any value; the logger shows verbose ones.
    """

    name: str
    verbose: bool

    def __call__(self, context: Any) -> Any: ...


def metric(name: str, verbose: bool = False) -> Callable[[F], F]:
    """Make a function of the training context a metric (sets `name`, `verbose`).

    **Arguments:**

    - `name`: the key of the metric in the [`History`][klax.History].
    - `verbose`: whether the logger shows the value while training.

    Example:
        >>> import klax
        >>> @klax.metric("step", verbose=True)
        ... def current_step(context):
        ...     return int(context.state.step)
        >>> current_step.name, current_step.verbose
        ('step', True)
    """
    check_str(name, "`klax.metric(name=...)`")

    def decorator(func: F) -> F:
        func.name = name  # pyright: ignore[reportFunctionMemberAccess]
        func.verbose = verbose  # pyright: ignore[reportFunctionMemberAccess]
        return func

    return decorator


class BatchMetric:
    """A metric that evaluates `func(model, batch, run_state)` on a fresh batch.

    Typical use: a loss on validation data. Each call draws the next batch from
    `batcher(data, batch_size, batch_axes, key=key)`, built once here.
    """

    def __init__(
        self,
        name: str,
        func: Callable[[Any, PyTree, Any], Any],
        data: PyTree,
        batcher: Batcher,
        batch_size: int,
        batch_axes: PyTree = 0,
        verbose: bool = False,
        jit_compile: bool = True,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `name`: the key of the metric in the [`History`][klax.History].
        - `func`: called as `func(model, batch, run_state)`, e.g. `klax.mse`.
        - `data`, `batcher`, `batch_size`, `batch_axes`: the batches to evaluate
          on, as in [`klax.fit`][] (e.g. `klax.batch_data`).
        - `verbose`: whether the logger shows the value while training.
        - `jit_compile`: wrap `func` in `eqx.filter_jit` (the default).
        - `key`: the batcher's PRNG key. (Keyword only argument.)
        """
        check_callable(
            func,
            "`klax.BatchMetric(func=...)`",
            "callable as func(model, batch, run_state)",
        )
        self.name = check_str(name, "`klax.BatchMetric(name=...)`")
        self.verbose = verbose
        self.batch_generator = batcher(data, batch_size, batch_axes, key=key)
        self.func = eqx.filter_jit(func) if jit_compile else func

    def __call__(self, context: Any) -> Any:
        """Evaluate `func` on the context's model and run state and the next batch."""
        batch = next(self.batch_generator)
        return self.func(context.state.model, batch, context.state.run_state)


# What `History.save` stores.
_FIELDS = "content total_time total_steps final_opt_state stop_step stop_reason".split()


class History:
    """Logged metric values of a training run, with its duration and final state.

    `content` maps each metric name to a tuple `(steps, values)` of two lists;
    `total_time` (seconds) and `total_steps` are -1.0 and -1 until a run ends;
    `final_opt_state` is the optimizer state at the end (`init_opt_state` to
    resume [`klax.fit`][]); `stop_step` and `stop_reason` give the step of a
    rejected non-finite update and why, else `None` (after
    [`klax.fit_ensemble`][], lists with an entry per member).

    Example:
        >>> import klax
        >>> history = klax.History()
        >>> history.append(0, "loss", 1.5)
        >>> history.append(10, "loss", 0.5)
        >>> history["loss"]
        ([0, 10], [1.5, 0.5])
    """

    def __init__(
        self,
        content: dict[str, tuple[list[int], list[Any]]] | None = None,
        total_time: float = -1.0,
        total_steps: int = -1,
        final_opt_state: Any = None,
        *,
        stop_step: int | list[int | None] | None = None,
        stop_reason: str | list[str | None] | None = None,
    ):
        self.content = {} if content is None else content
        self.total_time = total_time
        self.total_steps = total_steps
        self.final_opt_state = final_opt_state
        self.stop_step = stop_step
        self.stop_reason = stop_reason

    def __repr__(self) -> str:
        return (
            f"History(keys={self.keys()}, total_steps={self.total_steps}, "
            f"total_time={self.total_time:.3g})"
        )

    def append(self, step: int, key: str, value: Any) -> None:
        """Record `value` of metric `key` at `step`."""
        steps, values = self.content.setdefault(key, ([], []))
        steps.append(step)
        values.append(value)

    def __getitem__(self, name: str) -> tuple[list[int], list[Any]]:
        """The `(steps, values)` of metric `name`."""
        try:
            return self.content[name]
        except KeyError:
            raise KeyError(
                f"Metric '{name}' not found in history. Available: {self.keys()}."
            ) from None

    def keys(self) -> list[str]:
        """The names of the recorded metrics, in the order of first appearance."""
        return list(self.content.keys())

    def save(self, path: str | Path) -> None:
        """Write the history to `path` in a format that runs no code when loaded.

        A ZIP archive of JSON and raw array bytes, holding all six attributes
        (which come back equal and of the same types; the API reference lists
        the supported types). Parent directories are created; the file is
        replaced only once everything is encoded; any extension works.

        **Arguments:**

        - `path`: the file to write (a `str` or `pathlib.Path`).

        **Raises:**

        - `TypeError`, naming the attribute or metric, for a value of another
          type (e.g. a class of your own); nothing is written then.

        Example:
            >>> import klax, pathlib, tempfile
            >>> history = klax.History(total_steps=10)
            >>> history.append(0, "loss", 1.5)
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "history.klax"
            >>> history.save(path)
            >>> klax.History.load(path)["loss"]
            ([0], [1.5])
        """
        from ._history_io import save_history

        save_history(Path(path), {k: getattr(self, k) for k in _FIELDS})

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False) -> Self:
        """Read a history written by [`save`][klax.History.save], running no code.

        Classes (optimizer states) are looked up by name only in optax,
        equinox, jax, klax and paramax. JAX arrays go to the default device;
        load with 64-bit mode on if the run used it (else a warning names the
        narrowed arrays). Attributes missing from the file take their defaults.

        **Arguments:**

        - `path`: the file to read.
        - `allow_pickle`: also read the pickle files of earlier klax versions.
          Unpickling can run any code the file's author chose: pass `True`
          only for files you trust, then `save` them again to convert them.
          (Keyword only argument.)

        **Returns:**

        The loaded `History`.

        **Raises:**

        - `FileNotFoundError` if there is no file at `path`.
        - `ValueError`, naming the path, for a pickle file without
          `allow_pickle=True`, and for a damaged file or one of another program.
        """
        from ._history_io import load_history

        state = load_history(Path(path), allow_pickle=allow_pickle)
        return cls(**{k: state[k] for k in _FIELDS if k in state})

    def plot(self, *keys: str, ax: Any = None, **kwargs: Any) -> Any:
        """Plot metric values against steps with matplotlib; returns the axes.

        **Arguments:**

        - `*keys`: the metrics to plot (all if none are given).
        - `ax`: a matplotlib axes to draw into. If None, a new figure is made
          with a log-scaled y axis, axis labels, a title and a grid.
        - `**kwargs`: passed to `ax.plot` (`label` is always the metric name).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                "`klax.History.plot` needs matplotlib. Install it with "
                "`pip install 'klax[plot]'` (or `pip install matplotlib`)."
            ) from None
        if ax is None:
            _, ax = plt.subplots()
            ax.set_xlabel("Step")
            ax.set_ylabel("Metric")
            ax.set_yscale("log")
            ax.set_title("Training History")
            ax.grid(True)
        for name in keys or self.keys():
            steps, values = self[name]
            ax.plot(steps, values, **{**kwargs, "label": name})
        ax.legend()
        return ax

    def extend(self, other: "History") -> None:
        """Append the history of a continued run, `other`, to this one.

        Steps of `other` (and its `stop_step`) are shifted by
        `self.total_steps`; times and step counts add up; `final_opt_state`
        and the stop fields become `other`'s. The unset -1 of a fresh
        `History()` counts as 0.
        """
        offset = max(self.total_steps, 0)
        for name in other.keys():
            steps, values = other[name]
            own_steps, own_values = self.content.setdefault(name, ([], []))
            own_steps.extend(step + offset for step in steps)
            own_values.extend(values)
        self.total_time = max(self.total_time, 0.0) + max(other.total_time, 0.0)
        self.total_steps = offset + max(other.total_steps, 0)
        self.final_opt_state = other.final_opt_state

        def shift(s):
            return None if s is None else offset + s

        stop = other.stop_step  # a list (one entry per member) for an ensemble
        self.stop_step = (
            [shift(s) for s in stop] if isinstance(stop, list) else shift(stop)
        )
        self.stop_reason = other.stop_reason


class MetricLogger(Callback):
    """Callback that logs metrics every `log_every` steps into a `History`.

    With `verbose=0` nothing is shown, with `verbose=1` one line per logging
    step is printed (e.g. `Step  100/1000: loss: 1.2345e-02`), and with
    `verbose=2` a tqdm progress bar shows the verbose metrics as its postfix.

    The logger reads only `context.steps`, `context.state.step` (a 0-d array
    or an int) and, at the end, `context.state.opt_state`, and passes the
    context on to the metrics. Its `call_every` (= `log_every`) lets a
    training loop skip the calls in between (see [`klax.Callback`][]); the
    progress bar advances by the steps since its last update.
    """

    def __init__(
        self,
        log_every: int = 100,
        metrics: Sequence[Metric] | None = None,
        verbose: int = 2,
        history: History | None = None,
    ):
        """**Arguments:**

        - `log_every`: log at every step divisible by this (an int >= 1).
        - `metrics`: the metrics to log. A later metric with the same name
          replaces an earlier one (keeping the first one's position).
        - `verbose`: 0 (silent), 1 (print a line) or 2 (tqdm progress bar; falls
          back to 1 with a warning if tqdm is not installed).
        - `history`: a `History` to append to; a new one if None.
        """
        self.log_every = check_int(log_every, "log_every", minimum=1)
        if verbose not in (0, 1, 2):
            raise invalid(
                "`klax.MetricLogger(verbose=...)`", "0, 1 or 2", describe(verbose)
            )
        verbose = int(verbose)
        if verbose == 2:
            try:
                import tqdm  # noqa: F401
            except ImportError:
                warnings.warn(
                    "verbose=2 needs tqdm for its progress bar, which is not "
                    "installed (`pip install tqdm` or `pip install 'klax[tqdm]'`); "
                    "using verbose=1 instead.",
                    stacklevel=2,
                )
                verbose = 1
        self.verbose = verbose
        self.metrics: dict[str, Metric] = {}
        for m in metrics or ():
            self.add_metric(m)
        self.history = History() if history is None else history
        self.steps_str_length = 0
        self.start_time = 0.0
        self.tqdm_bar: Any = None
        self._bar_step = 0

    @property
    def call_every(self) -> int:
        """`on_training_step` only acts at steps divisible by this (= `log_every`)."""
        return self.log_every

    def add_metric(self, metric: Metric) -> None:
        """Add `metric`, replacing any metric with the same name."""
        self.metrics[metric.name] = metric

    def _make_bar(self, context: Any) -> Any:
        from tqdm import tqdm

        self.tqdm_bar = tqdm(total=context.steps, dynamic_ncols=True)
        self._bar_step = 0
        return self.tqdm_bar

    def _advance_bar(self, step: int) -> None:
        if step > self._bar_step:
            self.tqdm_bar.update(step - self._bar_step)
            self._bar_step = step

    def on_training_start(self, context: Any) -> None:
        """Start the clock (and the bar) and log the initial step."""
        self.start_time = time.time()
        self.steps_str_length = len(str(context.steps))
        if self.verbose > 1:
            self._make_bar(context)
        self.on_training_step(context)

    def on_training_step(self, context: Any) -> None:
        """Log every metric if the current step is divisible by `log_every`."""
        step = int(context.state.step)
        if step % self.log_every != 0:
            return None
        parts = []
        for m in self.metrics.values():
            value = jax.device_get(m(context))
            self.history.append(step, m.name, value)
            if m.verbose and self.verbose > 0:
                parts.append(self._describe(m.name, value))
        text = ", ".join(parts)
        if self.verbose == 1:
            print(f"Step {step:>{self.steps_str_length}}/{context.steps}: {text}")
        elif self.verbose == 2:
            bar = self.tqdm_bar
            if bar is None:
                bar = self._make_bar(context)
            bar.set_postfix_str(text, refresh=False)
            self._advance_bar(step)
            bar.refresh()  # show the new postfix with the new step count
        return None

    def _describe(self, name: str, value: Any) -> str:
        """How `verbose` 1 and 2 show a metric value (`"name: 1.2345e-02"`)."""
        try:
            return f"{name}: {value:.4e}"
        except (TypeError, ValueError):
            return f"{name}: {value!s}"

    def on_training_end(self, context: Any) -> None:
        """Store the run's time, step count and final optimizer state; close the bar."""
        self.history.total_time = max(time.time() - self.start_time, 0.0)
        self.history.total_steps = int(context.state.step)
        self.history.final_opt_state = context.state.opt_state
        if self.tqdm_bar is not None:
            try:
                self._advance_bar(int(context.state.step))
                self.tqdm_bar.close()
            except Exception:
                pass
