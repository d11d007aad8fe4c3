"""MkDocs hook: serve MathJax with the site, so that formulas render offline.

The MathJax 3 distribution comes from the Python package `django-static-mathjax`
(in the `dev` extra; it ships MathJax's `es5/` build as package data and needs
no Django at build time). Its combined TeX component, the TeX extensions it
loads on demand, its fonts and the accessibility components of its menu are
added to the build as files under `javascripts/mathjax/`, so the site renders
maths from `file://` or any server without a network connection. mkdocs.yml
loads `javascripts/mathjax/tex-mml-chtml.js` after the settings in
`javascripts/mathjax.js`.
"""

import importlib.resources
import pathlib

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

DEST = "javascripts/mathjax"
# Relative to MathJax's es5/ folder: what tex-mml-chtml.js loads at run time.
ENTRY = "tex-mml-chtml.js"
FOLDERS = ("input/tex/extensions", "output/chtml/fonts/woff-v2", "ui", "a11y", "sre")


def mathjax_es5() -> pathlib.Path:
    """The `es5/` folder of the installed MathJax distribution."""
    try:
        root = importlib.resources.files("mathjax")
    except ModuleNotFoundError:
        root = None
    es5 = pathlib.Path(str(root)) / "static" / "mathjax" / "es5" if root else None
    if es5 is None or not (es5 / ENTRY).is_file():
        raise PluginError(
            "mathjax_offline: MathJax is not installed (the Python package "
            "`django-static-mathjax` of the `dev` extra); run "
            '`pip install -e ".[dev]"` or `make docs`, which installs it.'
        )
    return es5


def on_files(files: Files, config) -> Files:
    es5 = mathjax_es5()
    sources = [es5 / ENTRY]
    for folder in FOLDERS:
        sources.extend(p for p in sorted((es5 / folder).rglob("*")) if p.is_file())
    for path in sources:
        uri = f"{DEST}/{path.relative_to(es5).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
