"""Griffe extension: document the docstring a function has at runtime.

Some klax docstrings are composed when the module is imported: a placeholder,
a name in double braces, stands for text shared by several functions (the keyword
arguments that `klax.fit` and `klax.fit_ensemble` have in common), filled in
by `klax._misc.compose_doc`. Griffe reads docstrings from the source, where
only the placeholder is. For an object whose docstring holds such a
placeholder, this extension imports it and uses its `__doc__` instead, so the
reference shows the complete text.
"""

import importlib
import inspect
import re
from typing import Any

import griffe

_PLACEHOLDER = re.compile(r"\{\{\w+\}\}")


class ComposedDocstrings(griffe.Extension):
    """Replace a docstring with placeholders by the composed runtime one."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None or not _PLACEHOLDER.search(docstring.value):
            return
        target: Any = importlib.import_module(obj.module.path)
        for part in obj.path.removeprefix(obj.module.path + ".").split("."):
            target = getattr(target, part)
        text = inspect.getdoc(target)
        if not text or _PLACEHOLDER.search(text):
            raise ValueError(f"{obj.path}: the composed docstring was not found")
        docstring.value = text
