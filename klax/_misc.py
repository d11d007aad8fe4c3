"""Small helpers shared across klax: dtypes and size arguments."""

import operator
from typing import Any, Literal

import jax
import jax.numpy as jnp


def default_floating_dtype() -> Any:
    """Return `jnp.float64` when x64 is enabled, else `jnp.float32`.

    Evaluated each time a module is built, never at import time, so that a
    user switching `jax_enable_x64` on after importing klax gets float64 models.
    """
    if jax.config.jax_enable_x64:  # pyright: ignore[reportAttributeAccessIssue]
        return jnp.float64
    return jnp.float32


def check_size(size: Any, name: str) -> int | Literal["scalar"]:
    """Validate a size argument (`int >= 0` or `"scalar"`) and return it unchanged.

    Raises `ValueError` for any other string, negative or non-integer value.
    """
    if isinstance(size, str):
        if size == "scalar":
            return size
        raise ValueError(
            f"{name} must be a non-negative integer or the string 'scalar', "
            f"but got the string {size!r}."
        )
    if isinstance(size, bool):
        raise ValueError(
            f"{name} must be a non-negative integer or 'scalar', but got {size!r}."
        )
    try:
        value = operator.index(size)
    except TypeError:
        raise ValueError(
            f"{name} must be a non-negative integer or 'scalar', but got "
            f"{size!r} of type {type(size).__name__}."
        ) from None
    if value < 0:
        raise ValueError(f"{name} must be non-negative, but got {value}.")
    return size


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
