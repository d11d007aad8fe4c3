#!/usr/bin/env bash
# Everything CI checks, in order. Run through `make test` (which prepares .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

run_pytest() {
  # pytest exits with 5 when it collected no tests: that is a failure here too.
  set +e
  "$BIN/python" -m pytest "$@"
  local rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; return 1; fi
  return "$rc"
}

echo "== pytest"
run_pytest -n 2 -q
echo "== public API check"
if [ -f ../shared/tools/api_check.py ]; then
  "$BIN/python" ../shared/tools/api_check.py
else
  echo "(../shared/tools/api_check.py not present; skipped)"
fi
