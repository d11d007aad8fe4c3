"""Saving and loading a `klax.History` without pickle.

A history file (format version 1) is a ZIP archive with two members:

- `klax-history.json`: UTF-8 JSON, `{"format": "klax.History", "version": 1,
  "attributes": {name: node, ...}}`, where a node describes one Python value
  (see `_Writer.node`);
- `arrays.bin`: the raw bytes of every array, each at an offset (a multiple
  of 16) given by its node together with its dtype and shape.

Loading parses JSON and copies bytes into arrays of a checked dtype; nothing in
the file is executed or unpickled. The only classes rebuilt by name are
NamedTuple classes (optax's optimizer states) and Equinox modules (the models
that states such as Adam's moments mirror) found in the modules of optax,
equinox, jax, klax or paramax, see `_resolve_class`; they are rebuilt the way
`jax.tree.unflatten` rebuilds them, without calling `__init__`.

Files of the former format (a pickled dict) are recognised by their first
bytes and unpickled only when the caller passes `allow_pickle=True`.
"""

import dataclasses
import importlib
import json
import math
import os
import pickle
import re
import secrets
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "klax.History"
VERSION = 1
JSON_MEMBER = "klax-history.json"
ARRAYS_MEMBER = "arrays.bin"
_ALIGN = 16

# NamedTuple and Equinox module classes are rebuilt only from these packages
# (paramax: its wrappers may sit in klax models, hence in optimizer states).
ALLOWED_PACKAGES = ("optax", "equinox", "jax", "klax", "paramax")

_ZIP_MAGIC = b"PK\x03\x04"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DTYPE_NAME = re.compile(r"[A-Za-z0-9_<>|=]+\Z")
_STANDARD_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str
_WEAK_ZERO = {"i": 0, "f": 0.0, "c": 0j}  # kinds a weakly typed jax array can have


# ----------------------------------------------------------------------- names


def _module_allowed(module: Any) -> bool:
    if not isinstance(module, str):
        return False
    parts = module.split(".")
    return (
        parts[0] in ALLOWED_PACKAGES
        and all(_IDENTIFIER.match(p) for p in parts)
        and "__main__" not in parts
    )


def _is_namedtuple_class(obj: Any) -> bool:
    return (
        isinstance(obj, type)
        and issubclass(obj, tuple)
        and isinstance(getattr(obj, "_fields", None), tuple)
        and all(isinstance(f, str) for f in obj._fields)  # pyright: ignore
        and callable(getattr(obj, "_make", None))
    )


def _is_module_class(obj: Any) -> bool:
    return (
        isinstance(obj, type)
        and issubclass(obj, eqx.Module)
        and dataclasses.is_dataclass(obj)
    )


_KINDS = {"namedtuple": _is_namedtuple_class, "module": _is_module_class}


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve_class(module: Any, qualname: Any, kind: str) -> type:
    """The class `module.qualname`, looked up only in the allowed packages.

    `kind` is `"namedtuple"` (a NamedTuple class, e.g. an optax state) or
    `"module"` (an `equinox.Module` subclass, e.g. a klax network, which
    optimizer states such as Adam's moments mirror). The module name is checked
    against `ALLOWED_PACKAGES` *before* anything is imported, and the qualified
    name must be a dotted chain of public identifiers. If the class is not
    found there (a library may move a class between its private modules), the
    package's top level is tried (`optax.ScaleByAdamState`). Raises
    `LookupError` if no class of that kind is found.
    """
    if not _module_allowed(module):
        raise LookupError(
            f"module {module!r} is not in the allowed packages {ALLOWED_PACKAGES}"
        )
    if not isinstance(qualname, str) or not all(
        _IDENTIFIER.match(p) and not p.startswith("__") for p in qualname.split(".")
    ):
        raise LookupError(f"{qualname!r} is not a plain class name")
    candidates = [module]
    package = module.split(".")[0]
    if package != module:
        candidates.append(package)
    for where in candidates:
        try:
            obj = _lookup(where, qualname)
        except (ImportError, AttributeError):
            continue
        if _KINDS[kind](obj):
            return obj
    what = "NamedTuple class" if kind == "namedtuple" else "Equinox module class"
    raise LookupError(f"no {what} {qualname!r} in {module!r}")


def _module_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# ----------------------------------------------------------------------- dtypes


def _dtype_code(dtype: np.dtype) -> str | None:
    """How a dtype is written: NumPy's `dtype.str`, or the name of an ml_dtypes type."""
    if dtype.names is not None or dtype.subdtype is not None or dtype.hasobject:
        return None
    if dtype.kind in _STANDARD_KINDS:
        return dtype.str
    module = getattr(dtype.type, "__module__", "") or ""
    if dtype.kind == "V" and module.split(".")[0] == "ml_dtypes":
        return dtype.name  # e.g. bfloat16, float8_e4m3fn, int4 (jax uses ml_dtypes)
    return None


def _dtype_from_code(code: Any) -> np.dtype:
    if not isinstance(code, str) or not _DTYPE_NAME.match(code):
        raise _Corrupt(f"bad dtype {code!r}")
    try:
        dtype = np.dtype(code)
    except (TypeError, ValueError):
        try:
            dtype = np.dtype(jnp.dtype(code))
        except (TypeError, ValueError):
            raise _Corrupt(f"unknown dtype {code!r}") from None
    if _dtype_code(dtype) is None:
        raise _Corrupt(f"dtype {code!r} is not one a history stores")
    return dtype


# ----------------------------------------------------------------------- writing


def _describe_path(path: Sequence[Any], content: Any = None) -> str:
    """`final_opt_state[0].mu['w']`, or `metric 'loss' (value 3, at step 30)`."""
    if len(path) >= 2 and path[0] == "content":
        where = f"metric {path[1]!r}"
        rest = path[2:]
        if len(rest) >= 2 and rest[0] in (0, 1) and isinstance(rest[1], int):
            where += f" ({'step' if rest[0] == 0 else 'value'} {rest[1]}"
            try:
                where += f", at step {content[path[1]][0][rest[1]]!r})"
            except (TypeError, KeyError, IndexError):
                where += ")"
            rest = rest[2:]
        return where + "".join(_path_part(p) for p in rest)
    return str(path[0]) + "".join(_path_part(p) for p in path[1:])


def _path_part(part: Any) -> str:
    if isinstance(part, _Field):
        return f".{part.name}"
    return f"[{part!r}]"


class _Field:
    """A NamedTuple field in a path (shown as `.name`)."""

    def __init__(self, name: str):
        self.name = name


_STORABLE = (
    "A history file holds None, bools, ints, floats, complex numbers, strings, "
    "lists, tuples, dicts, NumPy arrays and scalars, JAX arrays (also PRNG keys), "
    "and NamedTuples and Equinox modules of the packages "
    f"{', '.join(ALLOWED_PACKAGES)}. Convert the value (e.g. with `np.asarray` or "
    "`float`) or remove it before saving."
)


class _Writer:
    """Turns values into JSON nodes, collecting array bytes on the side."""

    def __init__(self, content: Any = None) -> None:
        self.content = content  # for naming the step of a metric value
        self.chunks: list[bytes] = []
        self.size = 0
        self._open: set[int] = set()  # ids of the containers being encoded

    def refuse(
        self, value: Any, path: tuple[Any, ...], why: str, hint: str = _STORABLE
    ) -> TypeError:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        return TypeError(
            f"`klax.History.save` cannot store {_describe_path(path, self.content)} "
            f"(a {kind}): "
            f"{why}. {hint}"
        )

    def array_bytes(self, array: np.ndarray) -> int:
        data = np.ascontiguousarray(array).tobytes()
        offset = self.size
        pad = -len(data) % _ALIGN
        self.chunks.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return offset

    def array(self, array: np.ndarray, kind: str, value: Any, path: tuple) -> dict:
        code = _dtype_code(array.dtype)
        if code is None:
            raise self.refuse(
                value, path, f"arrays of dtype {array.dtype} are not stored"
            )
        return {
            "type": kind,
            "dtype": code,
            "shape": list(array.shape),
            "offset": self.array_bytes(array),
        }

    def node(self, value: Any, path: tuple[Any, ...]) -> Any:
        """The JSON node of `value` (`path` names it in error messages)."""
        if value is None or type(value) in (bool, str):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return (
                value
                if math.isfinite(value)
                else {"type": "float", "value": repr(value)}
            )
        if type(value) is complex:
            return {
                "type": "complex",
                "real": self.node(value.real, path),
                "imag": self.node(value.imag, path),
            }
        if isinstance(value, jax.Array):
            return self.jax_array(value, path)
        if isinstance(value, np.generic):
            return self.array(np.asarray(value), "numpy_scalar", value, path)
        if type(value) is np.ndarray:
            return self.array(value, "ndarray", value, path)
        if (
            type(value) in (list, tuple, dict)
            or _is_namedtuple_class(type(value))
            or isinstance(value, eqx.Module)
        ):
            if id(value) in self._open:
                raise self.refuse(value, path, "it contains itself")
            self._open.add(id(value))
            try:
                return self.container(value, path)
            finally:
                self._open.discard(id(value))
        raise self.refuse(value, path, "this type is not stored")

    def stacked(self, values: list) -> dict | None:
        """One node for a list of NumPy arrays (or scalars) of one dtype and shape.

        A metric's values usually are such a list (`MetricLogger` stores 0-d
        arrays, `fit_ensemble` one array per member); writing them as one block
        keeps saving and loading fast.
        """
        if len(values) < 2:
            return None
        first = values[0]
        kind = type(first)
        if kind is not np.ndarray and not isinstance(first, np.generic):
            return None
        dtype, shape = first.dtype, first.shape
        for v in values:
            if type(v) is not kind or v.dtype != dtype or v.shape != shape:
                return None
        if _dtype_code(dtype) is None:
            return None
        block = np.stack([np.asarray(v) for v in values])
        node = self.array(block, "", values, ())
        node["type"] = "ndarray_list" if kind is np.ndarray else "numpy_scalar_list"
        return node

    def jax_array(self, value: jax.Array, path: tuple) -> dict:
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            return {
                "type": "prng_key",
                "impl": str(jax.random.key_impl(value)),
                "data": self.jax_array(jax.random.key_data(value), path),
            }
        try:
            array = np.asarray(value)
        except Exception as error:  # e.g. not fully addressable, or a tracer
            raise self.refuse(
                value, path, f"its values cannot be read ({error})"
            ) from None
        out = self.array(array, "jax_array", value, path)
        out["weak_type"] = bool(getattr(value, "weak_type", False))
        return out

    def container(self, value: Any, path: tuple) -> Any:
        if type(value) is list:
            stacked = self.stacked(value)
            if stacked is not None:
                return stacked
            return [self.node(v, (*path, i)) for i, v in enumerate(value)]
        if type(value) is tuple:
            return {
                "type": "tuple",
                "items": [self.node(v, (*path, i)) for i, v in enumerate(value)],
            }
        if type(value) is dict:
            items = []
            for k, v in value.items():
                if not _is_key(k):
                    raise self.refuse(
                        k,
                        path,
                        f"the dict key {k!r} is not a str, int, float, bool, "
                        "None or tuple of these",
                    )
                items.append([self.node(k, path), self.node(v, (*path, k))])
            return {"type": "dict", "items": items}
        cls = type(value)
        kind = "module" if isinstance(value, eqx.Module) else "namedtuple"
        try:
            found = _resolve_class(cls.__module__, cls.__qualname__, kind)
        except LookupError:
            found = None
        if found is not cls:
            raise self.refuse(
                value,
                path,
                "only NamedTuples and Equinox modules of the packages "
                f"{', '.join(ALLOWED_PACKAGES)} are rebuilt by name on loading",
                "If it is part of `final_opt_state` (whose moments mirror the "
                "model), save the state with `eqx.tree_serialise_leaves` and set "
                "`history.final_opt_state = None` before saving the history.",
            )
        head = {"type": kind, "module": cls.__module__, "name": cls.__qualname__}
        if kind == "namedtuple":
            fields = list(cls._fields)  # pyright: ignore[reportAttributeAccessIssue]
            items = list(value)  # pyright: ignore[reportArgumentType]
        else:
            fields = _module_fields(cls)
            extra = set(vars(value)) - set(fields)
            if extra:
                raise self.refuse(
                    value,
                    path,
                    f"it holds attributes {sorted(extra)} besides its dataclass fields",
                )
            missing = [f for f in fields if f not in vars(value)]
            if missing:
                raise self.refuse(value, path, f"its fields {missing} are not set")
            items = [vars(value)[f] for f in fields]
        return {
            **head,
            "fields": fields,
            "items": [
                self.node(v, (*path, _Field(f)))
                for f, v in zip(fields, items, strict=True)
            ],
        }


def _is_key(key: Any) -> bool:
    if key is None or type(key) in (str, int, float, bool):
        return True
    return type(key) is tuple and all(_is_key(k) for k in key)


def save_history(path: Path, attributes: dict[str, Any]) -> None:
    """Write `attributes` (name -> value) as a history file at `path`.

    Everything is encoded before the file is touched, so a value that cannot be
    stored raises `TypeError` and leaves an existing file unchanged; the file is
    written to a temporary name next to `path` and then moved over it.
    """
    writer = _Writer(attributes.get("content"))
    nodes = {name: writer.node(value, (name,)) for name, value in attributes.items()}
    header = {"format": FORMAT, "version": VERSION, "attributes": nodes}
    text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file next to `path` (so that the final rename stays on one file
    # system), opened normally so that it gets the usual permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as f, zipfile.ZipFile(f, "w") as zf:
            zf.writestr(JSON_MEMBER, text.encode("utf-8"), zipfile.ZIP_DEFLATED)
            with zf.open(ARRAYS_MEMBER, "w", force_zip64=True) as out:
                for chunk in writer.chunks:
                    out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------- reading


class _Corrupt(ValueError):
    """A malformed node; re-raised as a ValueError naming the file."""


class _Reader:
    def __init__(self, buffer: bytes):
        self.buffer = buffer
        self.narrowed: set[str] = set()  # dtypes jax could not keep (x64 off)

    def node(self, node: Any) -> Any:
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.node(n) for n in node]
        if type(node) is not dict:
            raise _Corrupt(f"unexpected JSON value {node!r}")
        kind = node.get("type")
        if kind == "float":
            text = node["value"]
            if text not in ("nan", "inf", "-inf"):
                raise _Corrupt(f"bad float {text!r}")
            return float(text)
        if kind == "complex":
            return complex(self.number(node["real"]), self.number(node["imag"]))
        if kind == "tuple":
            return tuple(self.node(n) for n in _items(node))
        if kind == "dict":
            out = {}
            for pair in _items(node):
                if type(pair) is not list or len(pair) != 2:
                    raise _Corrupt("a dict item is not a [key, value] pair")
                key = self.node(pair[0])
                if not _is_key(key):
                    raise _Corrupt(f"bad dict key {key!r}")
                out[key] = self.node(pair[1])
            return out
        if kind in _KINDS:
            return self.instance(node, kind)
        if kind == "ndarray":
            return self.array(node)
        if kind in ("ndarray_list", "numpy_scalar_list"):
            block = self.array(node)
            if block.ndim == 0:
                raise _Corrupt("a list of arrays without a list axis")
            if kind == "ndarray_list":
                return [np.array(row) for row in block]  # copies
            if block.ndim != 1:
                raise _Corrupt("a list of NumPy scalars with a shape")
            return list(block)  # NumPy scalars
        if kind == "numpy_scalar":
            array = self.array(node)
            if array.shape != ():
                raise _Corrupt("a NumPy scalar with a shape")
            return array[()]
        if kind == "jax_array":
            return self.jax_array(node)
        if kind == "prng_key":
            impl = node["impl"]
            if not isinstance(impl, str) or not _IDENTIFIER.match(impl):
                raise _Corrupt(f"bad PRNG implementation {impl!r}")
            data = self.node(node["data"])
            if not isinstance(data, jax.Array):
                raise _Corrupt("PRNG key data is not an array")
            return jax.random.wrap_key_data(data, impl=impl)
        raise _Corrupt(f"unknown node type {kind!r}")

    def number(self, node: Any) -> float:
        value = self.node(node)
        if type(value) is not float:
            raise _Corrupt("a complex number with a part that is not a float")
        return value

    def instance(self, node: dict, kind: str) -> Any:
        module, name, fields = node["module"], node["name"], node["fields"]
        try:
            cls = _resolve_class(module, name, kind)
        except LookupError as error:
            raise _Corrupt(
                f"refusing to rebuild class {module}.{name}: {error}"
            ) from None
        expected = list(cls._fields) if kind == "namedtuple" else _module_fields(cls)
        if expected != fields:
            raise _Corrupt(
                f"{module}.{name} now has the fields {expected}, the file {fields}: "
                "it was saved with another version of that library"
            )
        items = [self.node(n) for n in _items(node)]
        if len(items) != len(fields):
            raise _Corrupt(
                f"{module}.{name} needs {len(fields)} items, got {len(items)}"
            )
        if kind == "namedtuple":
            return cls._make(items)
        # As `jax.tree.unflatten` does for an Equinox module: no `__init__`,
        # the fields set directly.
        out = object.__new__(cls)
        for field, item in zip(fields, items, strict=True):
            object.__setattr__(out, field, item)
        return out

    def array(self, node: dict) -> np.ndarray:
        dtype = _dtype_from_code(node["dtype"])
        shape, offset = node["shape"], node["offset"]
        if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
            raise _Corrupt(f"bad array shape {shape!r}")
        if type(offset) is not int or offset < 0:
            raise _Corrupt(f"bad array offset {offset!r}")
        count = math.prod(shape)
        if offset + count * dtype.itemsize > len(self.buffer):
            raise _Corrupt("an array lies beyond the end of the array data")
        if count == 0:
            return np.empty(shape, dtype)
        flat = np.frombuffer(self.buffer, dtype, count, offset)
        return flat.reshape(shape).copy()

    def jax_array(self, node: dict) -> jax.Array:
        array = self.array(node)
        if array.dtype.kind in "SU":
            raise _Corrupt("a JAX array of strings")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # x64 off: reported below
            out = jnp.asarray(array)
        if out.dtype != array.dtype:
            self.narrowed.add(str(array.dtype))
        if node.get("weak_type") is True:
            zero = _WEAK_ZERO.get(out.dtype.kind)
            if zero is not None:
                weak = jnp.full(out.shape, zero)  # weakly typed, default dtype
                if weak.dtype == out.dtype:
                    out = weak.at[...].set(out)
        return out


def _items(node: dict) -> list:
    items = node["items"]
    if type(items) is not list:
        raise _Corrupt("`items` is not a list")
    return items


def _looks_like_pickle(head: bytes) -> bool:
    # Protocols 2 to 5 start with the PROTO opcode and the protocol number;
    # `pickle.dump` has written protocol 4 or 5 by default since Python 3.8.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def load_history(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """The attributes stored in the history file at `path` (name -> value)."""
    shown = repr(str(path))
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise FileNotFoundError(f"No klax.History file at {shown}.") from None
    except IsADirectoryError:
        raise ValueError(f"{shown} is a directory, not a klax.History file.") from None
    if head.startswith(_ZIP_MAGIC):
        return _read_zip(path, shown)
    if _looks_like_pickle(head):
        if not allow_pickle:
            raise ValueError(
                f"{shown} is a pickle file, the format `klax.History.save` wrote "
                "before histories were saved without pickle. Unpickling runs any "
                "code the file's author chose, so it is not done by default. If "
                "you trust the file, load it with `klax.History.load(path, "
                "allow_pickle=True)` and save it again to convert it to the safe "
                "format."
            )
        return _read_pickle(path, shown)
    raise ValueError(
        f"{shown} is not a klax.History file: it starts with {head!r}, neither "
        "a history archive (a ZIP file) nor a pickled history. Is it the file "
        "`klax.History.save` wrote?"
    )


def _read_zip(path: Path, shown: str) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if JSON_MEMBER not in names:
                raise ValueError(
                    f"{shown} is a ZIP file but not a klax.History file (it has no "
                    f"{JSON_MEMBER!r}); perhaps it was written by another program."
                )
            text = zf.read(JSON_MEMBER)
            buffer = zf.read(ARRAYS_MEMBER) if ARRAYS_MEMBER in names else b""
    # RuntimeError: also NotImplementedError (an unsupported compression method)
    # and encrypted members.
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:
        raise ValueError(
            f"{shown} is a damaged or truncated klax.History file (or another "
            f"program's ZIP file) and cannot be read: {error}"
        ) from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(
            f"{shown} is a damaged klax.History file: its {JSON_MEMBER} is not "
            f"valid JSON ({error})."
        ) from None
    if type(header) is not dict or header.get("format") != FORMAT:
        raise ValueError(
            f"{shown} is not a klax.History file: its {JSON_MEMBER} does not say "
            f'"format": "{FORMAT}".'
        )
    version = header.get("version")
    if type(version) is not int or version < 1:
        raise ValueError(f"{shown}: bad format version {version!r}.")
    if version > VERSION:
        raise ValueError(
            f"{shown} was written in history format version {version}, newer than "
            f"this klax reads ({VERSION}); update klax to load it."
        )
    attributes = header.get("attributes")
    if type(attributes) is not dict:
        raise ValueError(f"{shown} is a damaged klax.History file: no attributes.")
    reader = _Reader(buffer)
    out = {}
    for name, node in attributes.items():
        try:
            out[name] = reader.node(node)
        except (
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            RecursionError,
        ) as error:
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise ValueError(
                f"{shown} is a damaged klax.History file: attribute {name!r} cannot "
                f"be read ({detail})."
            ) from None
    if type(out.get("content", {})) is not dict:
        raise ValueError(
            f"{shown} is a damaged klax.History file: its content is not a dict."
        )
    if reader.narrowed:
        warnings.warn(
            f"{shown} holds JAX arrays of dtype {', '.join(sorted(reader.narrowed))}, "
            "which were converted to 32 bits because 64-bit mode is off. Enable it "
            "(`jax.config.update('jax_enable_x64', True)`) before loading to keep "
            "them exact.",
            stacklevel=3,
        )
    return out


def _read_pickle(path: Path, shown: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            state = pickle.load(f)
    except Exception as error:
        raise ValueError(
            f"{shown} looks like a pickle file but cannot be unpickled: "
            f"{type(error).__name__}: {error}"
        ) from error
    if isinstance(state, dict):
        return state
    if type(state).__name__ == "History" and isinstance(
        getattr(state, "__dict__", None), dict
    ):
        return dict(vars(state))
    raise ValueError(
        f"{shown} does not hold a saved klax.History (found an object of type "
        f"{type(state).__name__})."
    )
