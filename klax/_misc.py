"""Internal helpers shared across klax: dtypes and argument validation.

Every argument check of klax raises through `invalid`, so all messages read
alike: `"{name} must be {expected}, but got {given}. {what to do}"`.
"""

import math
import operator
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


def default_floating_dtype() -> Any:
    """Return `jnp.float64` when x64 is enabled, else `jnp.float32`.

    Evaluated each time a module is built, never at import time, so that a
    user switching `jax_enable_x64` on after importing klax gets float64 models.
    """
    if jax.config.jax_enable_x64:  # pyright: ignore[reportAttributeAccessIssue]
        return jnp.float64
    return jnp.float32


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def compose_doc(**parts: str) -> Callable[[Any], Any]:
    """Decorator: fill the docstring's placeholders (names in double braces).

    `parts[name]` replaces the placeholder of `name`, indented like its line:
    documentation that several functions share, written once. The API
    reference shows the composed text (`docs/hooks/griffe_composed_docs.py`).
    """

    def decorate(func: Any) -> Any:
        def fill(match: re.Match) -> str:
            line = func.__doc__[: match.start()].rpartition("\n")[2]
            indent = line[: len(line) - len(line.lstrip())]
            text = textwrap.dedent(parts[match[1]]).strip()
            return text.replace("\n", "\n" + indent).replace(indent + "\n", "\n")

        if func.__doc__ is not None:  # None under `python -OO`
            func.__doc__ = _PLACEHOLDER.sub(fill, func.__doc__)
        return func

    return decorate


def with_extra_args(optimizer: Any) -> optax.GradientTransformationExtraArgs:
    """`optimizer` if it takes extra arguments (`value`, ...), else a wrapped copy."""
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        return optimizer
    return optax.with_extra_args_support(optimizer)


def stack_signature(tree: Any) -> tuple[Any, Any]:
    """What pytrees must share to be stacked into one with a leading axis.

    `((structure, non-array leaves), (shape, dtype) of each array)`; compare
    the first part with `same`.
    """
    leaves, treedef = jax.tree.flatten(tree)
    static = tuple(None if eqx.is_array(x) else x for x in leaves)
    arrays = tuple((np.shape(x), jnp.result_type(x)) for x in leaves if eqx.is_array(x))
    return (treedef, static), arrays


def same(a: Any, b: Any) -> bool:
    """`a == b` as a bool, False where the comparison fails (e.g. of arrays)."""
    try:
        return bool(a == b)
    except Exception:
        return False


def is_none(x: Any) -> bool:
    """`is_leaf` for pytrees in which `None` is a leaf (e.g. `batch_axes`)."""
    return x is None


def invalid(
    name: str,
    expected: str,
    given: str,
    hint: str = "",
    error: type = ValueError,
    verb: str = "be",
) -> Exception:
    """The exception for a bad argument, in klax's one message style.

    **Arguments:**

    - `name`: the argument as the user wrote it, e.g. `"klax.fit(steps=...)"`.
    - `expected`: what it must be, e.g. `"a non-negative int"`.
    - `given`: what was passed (see `describe`).
    - `hint`: what to do instead (optional).
    - `error`: the exception class (`ValueError` for a bad value, `TypeError`
      for a bad kind of object).
    - `verb`: the verb of the requirement (`"{name} must {verb} {expected}"`).

    **Returns:**

    The exception, to be raised by the caller.
    """
    message = f"{name} must {verb} {expected}, but got {given}."
    return error(f"{message} {hint}" if hint else message)


def describe(value: Any) -> str:
    """`value` for an error message: its repr, and its type if that is unusual."""
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    return f"{value!r} of type {type(value).__name__}"


def check_int(value: Any, name: str, minimum: int = 0, hint: str = "") -> int:
    """`value` as a Python int, after checking that it is an int `>= minimum`.

    A bool or a non-integer raises `TypeError`, a too small int `ValueError`.
    """
    expected = {0: "a non-negative int", 1: "a positive int"}.get(
        minimum, f"an int >= {minimum}"
    )
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise invalid(name, expected, describe(value), hint, TypeError)
    count = operator.index(value)
    if count < minimum:
        bound = "non-negative" if minimum == 0 else f"at least {minimum}"
        raise invalid(name, bound, str(count), hint)
    return count


def check_index(value: Any, n: int, name: str) -> int:
    """An index into `n` entries (negative ones count from the end), as `0..n-1`."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise invalid(name, "an int index", describe(value), error=TypeError)
    index = operator.index(value)
    if not -n <= index < n:
        hint = f"The index is out of range for {n} entries."
        raise invalid(name, f"in range [-{n}, {n})", str(index), hint)
    return index % n


def check_bool(value: Any, name: str) -> Any:
    """`value` unchanged, after checking that it is a (Python or NumPy) bool."""
    if not isinstance(value, bool | np.bool_):
        raise invalid(name, "a bool", describe(value), error=TypeError)
    return value


def check_str(value: Any, name: str) -> str:
    """`value` unchanged, after checking that it is a string."""
    if not isinstance(value, str):
        raise invalid(name, "a string", describe(value), error=TypeError)
    return value


def check_callable(value: Any, name: str, expected: str = "callable") -> Any:
    """`value` unchanged, after checking that it can be called."""
    if not callable(value):
        raise invalid(name, expected, describe(value), error=TypeError)
    return value


def _real(value: Any) -> float | None:
    """`value` as a float if it is one real number (also a 0-d array), else None."""
    if isinstance(value, bool | str | bytes | np.bool_) or np.ndim(value) != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_real(value: Any, name: str, hint: str = "", positive: bool = False) -> float:
    """`value` as a float, after checking that it is a finite real `>= 0` (`> 0`)."""
    number = _real(value)
    if (
        number is None
        or not math.isfinite(number)
        or number < 0
        or (positive and number == 0)
    ):
        bound = "positive" if positive else "non-negative"
        raise invalid(name, f"a finite, {bound} real number", describe(value), hint)
    return number


def check_scales(scale: Any, n: int, name: str, hint: str = "") -> tuple[float, ...]:
    """`n` positive scales (floats) from one number or a sequence of `n` numbers."""
    expected = f"a positive number or a sequence of {n}"
    if _real(scale) is not None:
        scale = (scale,) * n
    elif isinstance(scale, str | bytes) or not isinstance(scale, Iterable):
        raise invalid(name, expected, describe(scale), hint, TypeError)
    scale = tuple(scale)
    if len(scale) != n:
        raise invalid(name, expected, f"{len(scale)} values ({scale!r})", hint)
    return tuple(
        check_real(s, f"{name} entry {k}", hint, True) for k, s in enumerate(scale)
    )


def check_size(size: Any, name: str) -> int | Literal["scalar"]:
    """Validate a size argument (`int >= 0` or `"scalar"`) and return it unchanged.

    Raises `ValueError` for any other string, negative or non-integer value.
    """
    if isinstance(size, str):
        if size == "scalar":
            return size
        expected = "a non-negative integer or the string 'scalar'"
        raise invalid(name, expected, f"the string {size!r}")
    if isinstance(size, bool) or not hasattr(size, "__index__"):
        raise invalid(name, "a non-negative integer or 'scalar'", describe(size))
    if operator.index(size) < 0:
        raise invalid(name, "non-negative", str(operator.index(size)))
    return size


def check_widths(width_sizes: Any, owner: str, minimum: int = 0) -> tuple[int, ...]:
    """Validate a list of hidden widths (ints `>= minimum`); return it as a tuple."""
    name = f"`{owner}(width_sizes=...)`"
    if isinstance(width_sizes, str | bytes) or not isinstance(width_sizes, Sequence):
        bound = "positive" if minimum else "non-negative"
        expected = f"a list/tuple of hidden layer widths ({bound} ints)"
        hint = "For example width_sizes=[16, 16]."
        raise invalid(name, expected, describe(width_sizes), hint, TypeError)
    widths = []
    for k, width in enumerate(width_sizes):
        entry = f"{name} entry width_sizes[{k}]"
        if width == "scalar":
            hint = "Hidden layers cannot be 'scalar'."
            raise invalid(entry, "a non-negative int", "'scalar'", hint)
        check_size(width, entry)
        widths.append(check_int(width, entry, minimum))
    return tuple(widths)


def size_as_int(size: int | Literal["scalar"]) -> int:
    """The number of features a (validated) size stands for: 1 for `"scalar"`."""
    return 1 if size == "scalar" else operator.index(size)


def static_size(size: int | Literal["scalar"]) -> int | Literal["scalar"]:
    """A (validated) size as it is stored in a static module field.

    Python ints and `"scalar"` are kept as they are. Other integer types (NumPy
    integers) become Python ints of the same value: Equinox warns about NumPy
    scalars in static fields, and a Python int hashes and compares the same.
    """
    if isinstance(size, (str, int)):
        return size
    return operator.index(size)


def check_axes(mesh: Any, axes: Any, where: str) -> tuple[str, ...]:
    """Validate names of axes of `mesh` (one name or a sequence of names)."""
    names = (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [a for a in names if a not in mesh.axis_names]
    if unknown or not names or not all(isinstance(a, str) for a in names):
        expected = f"axes of the mesh, which has axes {mesh.axis_names}"
        raise invalid(f"`{where}`", expected, repr(axes), verb="name")
    if len(set(names)) != len(names):
        raise invalid(f"`{where}`", "distinct mesh axes", repr(axes))
    return names


def check_loss_and_optimizer(loss: Any, optimizer: Any, where: str) -> None:
    """Check the `loss` (a `klax.Loss`) and `optimizer` (optax) of a fit."""
    from ._losses import Loss

    if not isinstance(loss, Loss):
        hint = "For example klax.mse, or a function decorated with @klax.loss."
        raise invalid(
            f"`{where}(loss=...)`", "a `klax.Loss`", describe(loss), hint, TypeError
        )
    if not all(callable(getattr(optimizer, m, None)) for m in ("init", "update")):
        raise invalid(
            f"`{where}(optimizer=...)`",
            "an optax optimizer (with `init` and `update`)",
            describe(optimizer),
            "For example optax.adam(1e-3).",
            TypeError,
        )


def check_callbacks(callbacks: Any) -> list[Any]:
    """`callbacks` as a list, after checking that each has the three hooks."""
    callbacks = list(callbacks or [])
    hooks = ("on_training_start", "on_training_step", "on_training_end")
    for callback in callbacks:
        missing = [h for h in hooks if not callable(getattr(callback, h, None))]
        if missing:
            expected = "`klax.Callback` instances (or have its three methods)"
            given = f"{callback!r}, which lacks {', '.join(missing)}"
            raise invalid("Callbacks", expected, given, error=TypeError)
    return callbacks


def check_opt_state(init: Any, params: Any, opt_state: Any, name: str) -> None:
    """Check that `opt_state` is laid out as `init(params)` would make it."""
    expected = jax.eval_shape(init, params)
    want, got = jax.tree.structure(expected), jax.tree.structure(opt_state)
    hint = "Pass the `final_opt_state` of a run with the same optimizer and model."
    if want != got:
        raise invalid(
            name, f"structured like `optimizer.init(params)`, {want}", str(got), hint
        )
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(opt_state), strict=True):
        if eqx.is_array(b) and a.shape != jnp.shape(b):
            expected = f"shaped as `optimizer.init(params)`: {a.shape}"
            raise invalid(f"{name} arrays", expected, f"shape {jnp.shape(b)}", hint)


def check_member_axis(tree: Any, members: Any, name: str) -> None:
    """Check that every array of `tree` has a leading axis of length `members`."""
    for x in jax.tree.leaves(tree):
        if eqx.is_array(x) and (np.ndim(x) == 0 or np.shape(x)[0] != members):
            expected = f"arrays with a leading member axis of length {members}"
            raise invalid(name, expected, f"an array of shape {np.shape(x)}")
