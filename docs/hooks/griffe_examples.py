"""Griffe extension: read a docstring's `Example:` heading as an examples section.

klax docstrings head their doctests with `Example:` (singular). Griffe's Google
parser only treats `Examples:` as an examples section and renders `Example:` as
an admonition of plain Markdown, in which `>>>` lines become block quotes. This
extension renames the heading before parsing, so the doctests are rendered as
Python console code.
"""

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleHeadings(griffe.Extension):
    """Rename `Example:` section headings to `Examples:`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _HEADING.sub(r"\1Examples:", docstring.value)
