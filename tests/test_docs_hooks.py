"""The documentation machinery: computed constants shown by value, the maths check."""

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(path: str):
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_runtime_values_show_the_load_case_names():
    griffe = pytest.importorskip("griffe")  # in the dev extra, with mkdocstrings
    hook = _load("docs/hooks/griffe_runtime_values.py")
    import klax.mechanics as km

    package = griffe.load(
        "klax.mechanics",
        search_paths=[str(ROOT)],
        extensions=griffe.load_extensions(hook.RuntimeValues()),
    )
    attr = package["_loadcases"]["LOAD_CASES"]
    assert attr.value == repr(km.LOAD_CASES)
    assert "uniaxial" in attr.value and "get_args" not in attr.value
    # A constant written as a literal keeps its source text.
    pairs = package["_stress"]["VOIGT_PAIRS"]
    assert str(pairs.value).startswith("((0, 0), (1, 1)")


def test_runtime_values_keep_expressions_that_are_not_plain_literals():
    hook = _load("docs/hooks/griffe_runtime_values.py")
    assert hook._is_literal(("a", 1, 2.0, None, (True,)))
    assert not hook._is_literal((object(),))
    assert not hook._is_literal({"a": 1})


TYPESET = (
    '<p>Energy <span class="arithmatex"><mjx-container jax="CHTML">'
    "<mjx-math>W</mjx-math><mjx-assistive-mml><math><mi>W</mi></math>"
    "</mjx-assistive-mml></mjx-container></span> and</p>"
    '<div class="arithmatex"><mjx-container display="true">x</mjx-container></div>'
    "<pre><code>print('\\\\(not maths\\\\)')</code></pre>"
)
RAW = '<p>Energy <span class="arithmatex">\\(W = \\mu\\)</span></p>'


def test_math_check_passes_a_typeset_page(capsys):
    check = _load("scripts/check_offline_math.py")
    assert check.check_page(TYPESET, "page.html") == []
    assert "2 formulas typeset" in capsys.readouterr().out


def test_math_check_fails_raw_tex_and_pages_without_formulas():
    check = _load("scripts/check_offline_math.py")
    problems = check.check_page(RAW, "raw.html")
    assert any("1 of 1 formulas were not typeset" in p for p in problems)
    assert any("raw TeX delimiter \\(" in p for p in problems)
    # TeX outside a formula element (e.g. the renderer never ran on it) fails too.
    stray = TYPESET + "<p>left over \\[x\\]</p>"
    assert any("\\[" in p for p in check.check_page(stray, "stray.html"))
    assert check.check_page("<p>no maths</p>", "plain.html") == [
        "plain.html: no formula (class arithmatex) on the page"
    ]


def test_math_check_fails_resources_from_the_network():
    check = _load("scripts/check_offline_math.py")
    cdn = '<script src="https://cdn.example/mathjax/tex-mml-chtml.js"></script>'
    problems = check.check_page(TYPESET + cdn, "cdn.html")
    assert problems == [
        "cdn.html: loads a resource from the network: "
        "<script src=https://cdn.example/mathjax/tex-mml-chtml.js>"
    ]
    # A link to another site is not a resource of the page.
    link = '<a href="https://example.org/">elsewhere</a>'
    assert check.check_page(TYPESET + link, "link.html") == []
