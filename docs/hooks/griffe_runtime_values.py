"""Griffe extension: show the value of a computed constant, not the expression.

Griffe reads attribute values from the source, so a module constant built by a
call (`LOAD_CASES = get_args(LoadCase)`) would be documented as that call. For a
public module-level attribute whose value in the source is a call, this
extension imports the module and, when the value is a plain literal (strings,
numbers, booleans, `None`, and tuples, lists or frozensets of them), shows its
`repr` instead, so the reference lists e.g. the load-case names themselves and
stays right when they change.
"""

import importlib
from typing import Any

import griffe

_SCALARS = (str, int, float, bool, type(None))
_MAX_LENGTH = 300  # longer values keep the expression


def _is_literal(value: object) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, tuple | list | frozenset):
        return all(_is_literal(v) for v in value)
    return False


class RuntimeValues(griffe.Extension):
    """Replace a call expression by the literal value it computes."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        parent = attr.parent
        if (
            not isinstance(attr.value, griffe.ExprCall)
            or parent is None
            or not parent.is_module
            or attr.name.startswith("_")
        ):
            return
        try:
            value = getattr(importlib.import_module(parent.path), attr.name)
        except (ImportError, AttributeError):
            return
        text = repr(value)
        if _is_literal(value) and len(text) <= _MAX_LENGTH:
            attr.value = text
