"""Filter specs that write model leaves as text, one line per leaf.

Use them with `eqx.tree_serialise_leaves` / `eqx.tree_deserialise_leaves` to get
a human-readable parameter file (e.g. to hand parameters to a finite-element
code).
"""

from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

_SCALARS = (bool, int, float, complex, np.generic)


def _array_tokens(array: np.ndarray) -> str:
    flat = array.reshape(-1)
    if np.issubdtype(array.dtype, np.bool_):
        return " ".join("1" if v else "0" for v in flat)
    if np.issubdtype(array.dtype, np.integer):
        return " ".join(str(int(v)) for v in flat)
    if np.issubdtype(array.dtype, np.complexfloating):
        return " ".join(str(complex(v)) for v in flat)
    return " ".join(f"{float(v):.18e}" for v in flat)


def text_serialize_filter_spec(f: BinaryIO, x: Any) -> None:
    """Write leaf `x` to the binary file `f` as one UTF-8 text line.

    Python and NumPy scalars are written with `str`; arrays as their C-order
    elements separated by spaces (floats as `%.18e`, integers and booleans
    exactly, complex numbers as `(re+imj)`). Other leaves write nothing.

    Example:
        >>> import equinox as eqx, jax.numpy as jnp, pathlib, tempfile
        >>> import klax
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.txt"
        >>> eqx.tree_serialise_leaves(path, (jnp.array([1.0, 2.0]), 3),
        ...     filter_spec=klax.text_serialize_filter_spec)
        >>> print(path.read_text(), end="")
        1.000000000000000000e+00 2.000000000000000000e+00
        3
    """
    if isinstance(x, _SCALARS):
        line = str(x)
    elif isinstance(x, (jax.Array, np.ndarray)):
        line = _array_tokens(np.asarray(x))
    else:
        return None
    f.write((line + "\n").encode("utf-8"))
    return None


def _parse_bool(text: str) -> bool:
    text = text.strip()
    if text in ("True", "true", "1"):
        return True
    if text in ("False", "false", "0"):
        return False
    return bool(float(text))


def _parse_array(line: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    tokens = line.split()
    size = int(np.prod(shape, dtype=np.int64))
    if len(tokens) != size:
        raise ValueError(
            f"Expected {size} values for an array of shape {shape} but the line "
            f"holds {len(tokens)}."
        )
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        values = np.array([complex(t) for t in tokens], dtype=dtype)
    elif np.issubdtype(dtype, np.bool_):
        values = np.array([_parse_bool(t) for t in tokens], dtype=dtype)
    elif np.issubdtype(dtype, np.integer):
        values = np.array(
            [int(t) if t.lstrip("+-").isdigit() else int(float(t)) for t in tokens],
            dtype=dtype,
        )
    else:
        values = np.array([float(t) for t in tokens], dtype=np.float64).astype(dtype)
    return values.reshape(shape)


def text_deserialize_filter_spec(f: BinaryIO, x: Any) -> Any:
    """Read one leaf like `x` from a file written with `text_serialize_filter_spec`.

    Scalars are parsed with their own type (booleans from `True`/`False`), JAX
    arrays (or `jax.ShapeDtypeStruct`s) and NumPy arrays get the shape and dtype
    of `x`. Any other leaf is returned unchanged and nothing is read.
    """
    if isinstance(x, (bool, np.bool_)):
        return type(x)(_parse_bool(f.readline().decode("utf-8")))
    if isinstance(x, _SCALARS):
        return type(x)(f.readline().decode("utf-8").strip())
    if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
        line = f.readline().decode("utf-8")
        return jnp.asarray(_parse_array(line, tuple(x.shape), x.dtype), dtype=x.dtype)
    if isinstance(x, np.ndarray):
        line = f.readline().decode("utf-8")
        return _parse_array(line, x.shape, x.dtype)
    return x
