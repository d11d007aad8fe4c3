#!/usr/bin/env bash
# Everything CI checks. Run through `make test` (which prepares .venv).
#
# Stages: tests, doctests, public API check, ruff (lint + format), pyright,
# every example in --quick mode, the README example, the strict docs build, and
# the offline maths check of the built site in headless Chromium.
# Every stage runs even when an earlier one failed; the script exits non-zero
# at the end if any stage failed, and lists which. A stage that cannot run here
# (exit code 77: a missing tool or file) is reported as skipped; with CI=true it
# fails the run instead, since CI must run every check.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
LINT_PATHS=(klax tests benchmarks examples docs/hooks scripts)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export NO_MKDOCS_2_WARNING=1  # silence mkdocs-material's banner

FAILED=()
SKIPPED=()
SKIP=77  # exit code of a stage that cannot run here (as in automake)

stage() {
  # stage NAME COMMAND...: run one stage, time it, record a failure or a skip.
  local name=$1
  shift
  echo "== $name"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  local took="$((SECONDS - start)) s"
  if [ "$rc" -eq 0 ]; then
    echo "-- $name: ok ($took)"
  elif [ "$rc" -eq "$SKIP" ] && [ "${CI:-}" != "true" ]; then
    echo "-- $name: skipped ($took)"
    SKIPPED+=("$name")
  elif [ "$rc" -eq "$SKIP" ]; then
    echo "-- $name: FAILED: could not run, and CI=true requires it ($took)" >&2
    FAILED+=("$name")
  else
    echo "-- $name: FAILED ($took)" >&2
    FAILED+=("$name")
  fi
}

run_pytest() {
  # pytest exits with 5 when it collected no tests: that is a failure here too.
  "$BIN/python" -m pytest "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; return 1; fi
  return "$rc"
}

api_check() {
  if [ -f ../shared/tools/api_check.py ]; then
    "$BIN/python" ../shared/tools/api_check.py
  else
    echo "../shared/tools/api_check.py is not present; cannot check the public API" >&2
    return "$SKIP"
  fi
}

doctests() {
  # Every `Example:` block of the package, in float32 (x64 off) and with implicit
  # rank promotion turned into an error, as in the test suite.
  JAX_ENABLE_X64=0 JAX_NUMPY_RANK_PROMOTION=raise \
    run_pytest --doctest-modules klax -q -p no:cacheprovider -n 2 --dist loadfile
}

ruff_lint() {
  "$BIN/ruff" check "${LINT_PATHS[@]}"
}

ruff_format() {
  "$BIN/ruff" format --check "${LINT_PATHS[@]}"
}

pyright_check() {
  # Settings (type-checking level "basic", paths) are in pyrightconfig.json.
  "$BIN/pyright" --project pyrightconfig.json
}

run_example() {
  # run_example SCRIPT: --quick run; it must succeed and write its figure <name>.png.
  local script=$1 name start
  name=$(basename "$script" .py)
  start=$SECONDS
  if ! JAX_NUMPY_RANK_PROMOTION=raise \
    "$BIN/python" "$script" --quick --out "$TMP/figures" >"$TMP/$name.log" 2>&1; then
    echo "example $script failed; its output:" >&2
    cat "$TMP/$name.log" >&2
    return 1
  fi
  if [ ! -s "$TMP/figures/$name.png" ]; then
    echo "example $script did not write $name.png" >&2
    return 1
  fi
  echo "$script: ok ($((SECONDS - start)) s)"
}

examples_quick() {
  # Two at a time: most of their time is single-threaded compilation.
  export BIN TMP
  export -f run_example
  printf '%s\n' examples/*.py | xargs -P 2 -I{} bash -c 'run_example "$1"' _ {}
}

readme_example() {
  # The ```python block of README.md must run as it is.
  awk '/^```python$/{f=1; next} /^```$/{f=0} f' README.md >"$TMP/readme_example.py"
  if [ ! -s "$TMP/readme_example.py" ]; then
    echo "README.md has no \`\`\`python block" >&2
    return 1
  fi
  JAX_NUMPY_RANK_PROMOTION=raise "$BIN/python" "$TMP/readme_example.py"
}

docs_build() {
  # A broken cross-reference, link, snippet or an undocumented public name fails.
  "$BIN/mkdocs" build --strict --site-dir "$TMP/site"
}

apt_install() {
  # apt_install PACKAGE: install a Debian package when this machine allows it
  # (root, or password-less sudo, with apt-get); returns non-zero otherwise.
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "installing $1 with apt-get"
  { ${sudo[@]+"${sudo[@]}"} apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq "$1"; } \
    >"$TMP/apt-$1.log" 2>&1 || { cat "$TMP/apt-$1.log" >&2; return 1; }
}

ensure_gfortran() {
  # The Abaqus export tests (tests/test_abaqus.py) compile the generated Fortran
  # with gfortran. Install it when it is missing and this machine allows it.
  # Otherwise those tests skip, or fail when CI=true.
  command -v gfortran >/dev/null 2>&1 && return 0
  apt_install gfortran || echo "(gfortran missing and not installable here)" >&2
  return 0
}

find_chromium() {
  command -v chromium || command -v chromium-browser || command -v google-chrome
}

docs_math_offline() {
  # Open pages with formulas of the site built by docs_build from file:// in
  # headless Chromium (no network) and check that MathJax typeset every formula.
  if [ ! -f "$TMP/site/index.html" ]; then
    echo "the docs build wrote no site; nothing to check" >&2
    return 1
  fi
  local chromium
  if ! chromium=$(find_chromium); then
    if ! apt_install chromium; then
      echo "no chromium on the PATH (Debian: apt-get install chromium)" >&2
      return "$SKIP"
    fi
    chromium=$(find_chromium) || return "$SKIP"
  fi
  CHROMIUM="$chromium" "$BIN/python" scripts/check_offline_math.py "$TMP/site" \
    examples/treloar.html api/mechanics/stress.html
}

ensure_gfortran
stage "pytest" run_pytest -n 2 --dist loadfile -q
stage "doctests" doctests
stage "public API check" api_check
stage "ruff check" ruff_lint
stage "ruff format --check" ruff_format
stage "pyright" pyright_check
stage "examples (--quick)" examples_quick
stage "README example" readme_example
stage "docs (mkdocs build --strict)" docs_build
stage "docs maths offline (Chromium)" docs_math_offline

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "FAILED stages: ${FAILED[*]}" >&2
  exit 1
fi
if [ "${#SKIPPED[@]}" -gt 0 ]; then
  echo "all checks that ran passed; SKIPPED stages: ${SKIPPED[*]}"
  exit 0
fi
echo "all checks passed"
