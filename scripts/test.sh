#!/usr/bin/env bash
# The README's test command: installs the project, starts every service the
# tests need (idempotently), then runs lint, types and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[dev]"
carechain services up
python3 -m ruff check .
python3 -m mypy
# pytest exits 5 when no test ran: that is a failure here, as is any other non-zero.
python3 -m pytest "$@"
