"""Check that a built site typesets its formulas offline, in headless Chromium.

    python scripts/check_offline_math.py SITE_DIR PAGE.html [PAGE.html ...]

Each page is opened from `file://` (no server, no network) and its DOM is read
back after MathJax ran (`--dump-dom` with a virtual-time budget). A page passes
when it has formulas, every formula element that pymdownx.arithmatex wrote
(class `arithmatex`) holds a typeset `mjx-container`, no raw TeX delimiter
`\\(`, `\\[` or `$$` is left in the text of the page, and it loads no script,
stylesheet or image from the network. Every other page of the site is read as
built (without the browser) for resources from the network too. Exits 1 with
one line per problem otherwise, 2 on bad arguments. The browser is `$CHROMIUM`
or the first of chromium, chromium-browser, google-chrome on the PATH.
"""

import html.parser
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DELIMITERS = ("\\(", "\\)", "\\[", "\\]", "$$")
# Text inside these elements is code or machinery, not page text.
SKIPPED = {"script", "style", "code", "pre", "mjx-assistive-mml", "textarea"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"}
VOID |= {"source", "track", "wbr"}
# Attributes through which a page loads a resource (links to other sites are fine).
LOADS = {("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src")}
LOADS |= {("source", "src"), ("embed", "src")}


class MathScan(html.parser.HTMLParser):
    """Counts formula elements and typeset ones, and collects the page text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []  # (tag, is an arithmatex element)
        self.formulas = 0
        self.typeset = 0
        self.current_typeset = False
        self.text: list[str] = []
        self.remote: list[str] = []  # resources loaded from the network

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name, value in attrs:
            remote = (value or "").startswith(("http://", "https://", "//"))
            canonical = tag == "link" and values.get("rel") == "canonical"
            if (tag, name) in LOADS and remote and not canonical:
                self.remote.append(f"<{tag} {name}={value}>")
        if tag in VOID:
            return
        classes = (values.get("class") or "").split()
        is_formula = "arithmatex" in classes
        if is_formula:
            self.formulas += 1
            self.current_typeset = False
        if tag == "mjx-container" and any(f for _, f in self.stack):
            if not self.current_typeset:
                self.typeset += 1
                self.current_typeset = True
        self.stack.append((tag, is_formula))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        # Pop up to the matching tag (tolerates unclosed elements).
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        if not any(tag in SKIPPED for tag, _ in self.stack):
            self.text.append(data)


def browser() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def dump_dom(chromium: str, page: pathlib.Path, profile: str) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # runs as root in CI
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=180, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(
            f"{chromium} failed on {page} (exit {result.returncode}): "
            f"{result.stderr.strip()[-500:]}"
        )
    return result.stdout


def check_page(dom: str, name: str) -> list[str]:
    scan = MathScan()
    scan.feed(dom)
    problems = []
    if scan.formulas == 0:
        problems.append(f"{name}: no formula (class arithmatex) on the page")
    elif scan.typeset < scan.formulas:
        problems.append(
            f"{name}: {scan.formulas - scan.typeset} of {scan.formulas} formulas "
            "were not typeset (no mjx-container)"
        )
    for resource in scan.remote:
        problems.append(f"{name}: loads a resource from the network: {resource}")
    text = "".join(scan.text)
    for delimiter in DELIMITERS:
        at = text.find(delimiter)
        if at >= 0:
            context = " ".join(text[max(at - 40, 0) : at + 40].split())
            problems.append(f"{name}: raw TeX delimiter {delimiter} left: …{context}…")
    if not problems:
        print(
            f"{name}: {scan.typeset} formulas typeset, no raw TeX left, "
            "nothing loaded from the network"
        )
    return problems


def remote_resources(site: pathlib.Path) -> list[str]:
    """Resources from the network in any page of the site, as built."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        scan = MathScan()
        scan.feed(page.read_text(encoding="utf-8"))
        name = page.relative_to(site).as_posix()
        problems += [
            f"{name}: loads a resource from the network: {r}" for r in scan.remote
        ]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(
            "usage: check_offline_math.py SITE_DIR PAGE.html [PAGE.html ...]",
            file=sys.stderr,
        )
        return 2
    site = pathlib.Path(argv[0])
    pages = [site / page for page in argv[1:]]
    missing = [str(p) for p in pages if not p.is_file()]
    if missing:
        print(f"no such page: {', '.join(missing)}", file=sys.stderr)
        return 2
    chromium = browser()
    if chromium is None:
        print(f"no browser found (tried {', '.join(BROWSERS)})", file=sys.stderr)
        return 2
    problems = remote_resources(site)
    with tempfile.TemporaryDirectory() as profile:
        for page in pages:
            dom = dump_dom(chromium, page, profile)
            problems += check_page(dom, page.relative_to(site).as_posix())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
