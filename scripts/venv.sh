#!/usr/bin/env bash
# The project's Python venv for its Python tools and clients (the Flight SQL clients, the S3
# and Schema Registry stand-ins, the demos' producers and consumers): prints its python,
# creating the venv first if needed. Each caller installs its own hashed requirements into it.
#
#   "$(bash scripts/venv.sh)" -c 'import sys; print(sys.prefix)'
#
# FERRIS_VENV: the venv's folder (default .venv in the repo root, ignored by git).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${FERRIS_VENV:-}" in
  "") VENV="$ROOT/.venv" ;;
  /*) VENV="$FERRIS_VENV" ;;
  *) VENV="$PWD/$FERRIS_VENV" ;;
esac

die() { printf 'venv.sh: %s\n' "$*" >&2; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  python3="$(command -v python3)" || die "python3 not found (Debian: apt-get install python3 python3-venv)"
  printf 'venv.sh: creating the Python venv %s\n' "$VENV" >&2
  # --clear: a venv whose python is gone (an interpreter removed or moved) is rebuilt.
  "$python3" -m venv --clear "$VENV" >&2 || die "could not create $VENV (Debian: apt-get install python3-venv)"
fi
if [[ ! -x "$VENV/bin/pip" ]]; then
  "$VENV/bin/python" -m ensurepip >&2 || die "the venv $VENV has no pip (Debian: apt-get install python3-venv)"
fi
printf '%s\n' "$VENV/bin/python"
