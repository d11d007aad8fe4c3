"""Filter specs that write model leaves as text, one line per leaf.

Use them with `eqx.tree_serialise_leaves` / `eqx.tree_deserialise_leaves` to get
a human-readable parameter file (e.g. to hand parameters to a finite-element
code). [`klax.load_leaves`][] reads such a file (or Equinox's binary one) with
errors that name the leaf that does not fit.
"""

import pathlib
from collections.abc import Callable
from typing import Any, BinaryIO

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

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


def load_leaves(
    path_or_file: Any,
    like: PyTree,
    filter_spec: Callable[[BinaryIO, Any], Any] = text_deserialize_filter_spec,
) -> PyTree:
    """Load a file written by `eqx.tree_serialise_leaves` into the structure of `like`.

    The same as `eqx.tree_deserialise_leaves(path_or_file, like,
    filter_spec=filter_spec)`, but a file that does not fit `like` (written
    from a model of another structure or size) raises a `ValueError` that
    names the leaf path and both shapes, and a file with more leaves than
    `like` is an error too, instead of silently loading its beginning.

    **Arguments:**

    - `path_or_file`: a path (`.eqx` is appended when it has no suffix, as
      Equinox does) or a binary file object.
    - `like`: a pytree of the expected structure, e.g. a freshly built model
      (its arrays give the shapes and dtypes).
    - `filter_spec`: how each leaf is read: `klax.text_deserialize_filter_spec`
      (the default, for files written with `klax.text_serialize_filter_spec`)
      or `eqx.default_deserialise_filter_spec` for Equinox's binary format.

    **Returns:**

    `like` with its leaves read from the file.

    Example:
        >>> import equinox as eqx, jax.numpy as jnp, pathlib, tempfile
        >>> import klax
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.txt"
        >>> eqx.tree_serialise_leaves(path, {"w": jnp.ones(3)},
        ...     filter_spec=klax.text_serialize_filter_spec)
        >>> klax.load_leaves(path, {"w": jnp.zeros(3)})["w"].tolist()
        [1.0, 1.0, 1.0]
        >>> try:
        ...     klax.load_leaves(path, {"w": jnp.zeros(4)})
        ... except ValueError as err:
        ...     print(str(err)[:61])
        The leaf at ['w'] of `like` must be read as an array of shape
    """
    paths = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_flatten_with_path(like)[0]
    ]
    read: list[Any] = []

    def fail(index: int, expected: Any, given: str) -> ValueError:
        return ValueError(
            f"The leaf at {paths[index] or 'the root'} of `like` must be read as "
            f"{expected}, but got {given} in the file. The file was written from "
            "a model of another structure or size: build `like` as that model "
            "was built."
        )

    def spec(f: BinaryIO, x: Any) -> Any:
        index = len(read)
        read.append(x)
        shape = getattr(x, "shape", None)
        try:
            out = filter_spec(f, x)
        except Exception as err:
            counted = str(err).rsplit("holds ", 1)
            if shape is not None and len(counted) == 2:  # the text format
                given = f"{counted[1].rstrip('.')} values"
                raise fail(index, f"an array of shape {tuple(shape)}", given) from err
            raise fail(index, f"a leaf like {x!r}", f"an error ({err})") from err
        if shape is not None and getattr(out, "shape", shape) != shape:
            given = f"an array of shape {tuple(out.shape)}"
            raise fail(index, f"an array of shape {tuple(shape)}", given)
        return out

    if isinstance(path_or_file, str | pathlib.Path):
        path = pathlib.Path(path_or_file)
        path = path.with_suffix(".eqx") if path.suffix == "" else path
        with path.open("rb") as f:
            return load_leaves(f, like, filter_spec)
    try:
        out = eqx.tree_deserialise_leaves(path_or_file, like, filter_spec=spec)
    except RuntimeError as err:  # Equinox's wrapper around the error above
        cause = err.__cause__
        while isinstance(cause, RuntimeError):  # nested wrappers
            cause = cause.__cause__
        if isinstance(cause, ValueError) and str(cause).startswith("The leaf at"):
            raise cause from cause.__cause__
        raise
    if path_or_file.read(1):
        raise ValueError(
            f"The file holds more leaves than `like` ({len(paths)}): it was "
            "written from a model of another structure. Build `like` as that "
            "model was built."
        )
    return out
