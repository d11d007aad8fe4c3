"""MkDocs hook: every public name and every example script must appear in the docs.

Public names are read from the installed package (`klax`, `klax.nn` and, once it
exists, `klax.mechanics`); each must be rendered somewhere with a mkdocstrings
directive `::: <module>.<name>` that uses its public path. Each script in
`examples/` must be embedded (pymdownx.snippets `--8<--`) by some page. A gap
is logged as a warning, which fails `mkdocs build --strict`.
"""

import importlib
import logging
import pathlib
import re
import types

log = logging.getLogger("mkdocs.hooks.api_coverage")

PACKAGES = ("klax", "klax.nn", "klax.mechanics")
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
SNIPPET = re.compile(r"""--8<--\s+["']([^"']+)["']""")


def public_names(module_name: str) -> set[str] | None:
    """Public, non-module names of a package, or None if it cannot be imported."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return {
        f"{module_name}.{n}"
        for n in names
        if not isinstance(getattr(module, n), types.ModuleType)
    }


def on_files(files, config):
    docs_dir = pathlib.Path(config["docs_dir"])
    root = docs_dir.parent
    documented: set[str] = set()
    embedded: set[str] = set()
    for path in docs_dir.rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        documented.update(DIRECTIVE.findall(text))
        embedded.update(SNIPPET.findall(text))

    for package in PACKAGES:
        names = public_names(package)
        if names is None:
            if package != "klax.mechanics":
                log.warning("api_coverage: cannot import %s", package)
            continue
        for name in sorted(names - documented):
            log.warning(
                "api_coverage: public name %s has no `::: %s` entry in docs/api/",
                name,
                name,
            )

    for script in sorted((root / "examples").glob("*.py")):
        rel = script.relative_to(root).as_posix()
        if rel not in embedded:
            log.warning(
                "api_coverage: example %s is not embedded in any page "
                '(add `--8<-- "%s"` to a page under docs/examples/)',
                rel,
                rel,
            )
    return files
