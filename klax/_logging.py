"""Logging during training: metrics, the history they fill, and the logger.

A *metric* is any callable with a `name` and a `verbose` flag that takes the
training context and returns a value. The [`MetricLogger`][klax.MetricLogger]
callback evaluates its metrics every `log_every` steps, stores the values in a
[`History`][klax.History] and reports the verbose ones (a printed line or a
tqdm progress bar).
"""

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
from ._misc import check_callable, check_int, describe, invalid

F = TypeVar("F", bound=Callable[..., Any])


@runtime_checkable
class Metric(Protocol):
    """A quantity logged during training.

    Any callable with a `name: str` and a `verbose: bool` attribute qualifies;
    it is called with the training context (anything with a `state` holding
    `model` and `run_state`) and may return any value. Metrics with
    `verbose=True` are shown by the logger.
    """

    name: str
    verbose: bool

    def __call__(self, context: Any) -> Any: ...


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise invalid(f"`{where}(name=...)`", "a string", describe(name), "", TypeError)
    return name


def metric(name: str, verbose: bool = False) -> Callable[[F], F]:
    """Decorator that makes a function of the training context a metric.

    Sets `func.name = name` and `func.verbose = verbose` and returns `func`
    itself.

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
    _check_name(name, "klax.metric")

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
        self.name = _check_name(name, "klax.BatchMetric")
        self.verbose = verbose
        self.batch_generator = batcher(data, batch_size, batch_axes, key=key)
        self.func = eqx.filter_jit(func) if jit_compile else func

    def __call__(self, context: Any) -> Any:
        """Evaluate `func` on the context's model and run state and the next batch."""
        batch = next(self.batch_generator)
        return self.func(context.state.model, batch, context.state.run_state)


class History:
    """Logged metric values of a training run, with its duration and final state.

    `content` maps each metric name to a tuple `(steps, values)` of two lists.
    `total_time` (seconds) and `total_steps` are -1.0 and -1 until a run ends;
    `final_opt_state` is the optimizer state at the end (pass it as
    `init_opt_state` to [`klax.fit`][] to resume). `stop_step` and
    `stop_reason` are set when `klax.fit` stopped early because an update was
    not finite (the step of the rejected update and why), else `None`; after
    [`klax.fit_ensemble`][] they are lists with one such entry per member.

    Example:
        >>> import klax
        >>> history = klax.History()
        >>> history.append(0, "loss", 1.5)
        >>> history.append(10, "loss", 0.5)
        >>> history["loss"]
        ([0, 10], [1.5, 0.5])
    """

    content: dict[str, tuple[list[int], list[Any]]]
    total_time: float
    total_steps: int
    final_opt_state: Any
    stop_step: int | list[int | None] | None
    stop_reason: str | list[str | None] | None

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

        The file is a ZIP archive holding JSON (the structure) and the raw bytes
        of the arrays; parent directories are created as needed, and the file
        is replaced only once everything has been encoded. Any extension works
        ([`load`][klax.History.load] recognises the file by its content).

        All six attributes are stored, `content`, `total_time`, `total_steps`,
        `final_opt_state`, `stop_step` and `stop_reason`, and come back equal
        and of the same types (see the table in the API reference): None,
        bools, ints, floats (also NaN and infinities), complex numbers,
        strings, lists, tuples and dicts (keys: str, int, float, bool, None or
        tuples of these), NumPy arrays and scalars, JAX arrays (dtype, shape and
        weak type kept; PRNG key arrays too), and NamedTuples and Equinox
        modules of optax, equinox, jax, klax or paramax (optimizer states and
        the models their moments mirror), which are rebuilt by name on
        loading.

        **Arguments:**

        - `path`: the file to write (a `str` or `pathlib.Path`).

        **Raises:**

        - `TypeError`, naming the attribute or metric, if a value is of any
          other type (e.g. a class of your own, also an Equinox module); nothing
          is written then.

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

        save_history(
            Path(path),
            {
                "content": self.content,
                "total_time": self.total_time,
                "total_steps": self.total_steps,
                "final_opt_state": self.final_opt_state,
                "stop_step": self.stop_step,
                "stop_reason": self.stop_reason,
            },
        )

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False) -> Self:
        """Read a history written by [`save`][klax.History.save].

        Loading parses the file; it runs no code from it. Optimizer states come
        back as the same optax NamedTuples (and Equinox modules); classes are
        looked up only in optax, equinox, jax, klax and paramax. JAX arrays
        are placed on the default device; load with 64-bit mode on if the run
        used it (else a warning says which arrays were narrowed). Attributes
        missing from the file take the constructor's defaults.

        **Arguments:**

        - `path`: the file to read.
        - `allow_pickle`: also read the former format, a pickle file (what
          `History.save` wrote in the klax release and until now). Unpickling
          can run any code the file's author chose: pass `True` only for files
          you trust, then `save` them again to convert them. (Keyword only
          argument.)

        **Returns:**

        The loaded `History`.

        **Raises:**

        - `FileNotFoundError` if there is no file at `path`.
        - `ValueError`, naming the path, for a pickle file without
          `allow_pickle=True`, and for a damaged or truncated file or a file
          of another program.
        """
        from ._history_io import load_history

        state = load_history(Path(path), allow_pickle=allow_pickle)
        known = (
            "content",
            "total_time",
            "total_steps",
            "final_opt_state",
            "stop_step",
            "stop_reason",
        )
        return cls(**{k: state[k] for k in known if k in state})

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

        Steps of `other` are shifted by `self.total_steps`; times and step
        counts add up, and `final_opt_state` (and `stop_step`, shifted, and
        `stop_reason`) become `other`'s. The unset
        values -1 of a fresh `History()` (on either side) count as 0.
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
        if isinstance(other.stop_step, list):  # an ensemble: one entry per member
            self.stop_step = [
                None if s is None else offset + s for s in other.stop_step
            ]
        else:
            self.stop_step = (
                None if other.stop_step is None else offset + other.stop_step
            )
        self.stop_reason = other.stop_reason


class MetricLogger(Callback):
    """Callback that logs metrics every `log_every` steps into a `History`.

    With `verbose=0` nothing is shown, with `verbose=1` one line per logging
    step is printed (e.g. `Step  100/1000: loss: 1.2345e-02`), and with
    `verbose=2` a tqdm progress bar shows the verbose metrics as its postfix.

    The logger duck-types its context: it reads only `context.steps`,
    `context.state.step` (a 0-d array or a Python int) and, at the end,
    `context.state.opt_state`, and passes the context on to the metrics.

    The attribute `call_every` (equal to `log_every`) tells a training loop that
    `on_training_step` only does something at steps divisible by it, so the loop
    may skip the calls in between (a fused loop then runs `log_every` steps per
    compiled call). The progress bar advances by the steps since its last update,
    so it stays right when steps are skipped.
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
        if self.verbose == 1:
            print(
                f"Step {step:>{self.steps_str_length}}/{context.steps}: "
                + ", ".join(parts)
            )
        elif self.verbose == 2:
            bar = self.tqdm_bar
            if bar is None:
                bar = self._make_bar(context)
            bar.set_postfix_str(", ".join(parts), refresh=False)
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
