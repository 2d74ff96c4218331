#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test (tests/browser/dashboard.mjs): Debian's
# chromium package, installed with apt-get when it is missing (as root, or through sudo), and
# playwright-core from npm, pinned, in a cache folder outside the repository. Installs nothing
# when both are there. Prints the node_modules folder that holds playwright-core.
#
#   FERRIS_NODE_MODULES="$(bash scripts/browser.sh)" node tests/browser/dashboard.mjs
#
# FERRIS_CHROMIUM: another Chromium or Chrome binary (then apt-get is not needed).
# FERRIS_CACHE: the cache folder (default ~/.cache/ferris).
set -euo pipefail

PLAYWRIGHT_VERSION=1.65.2
cache="${FERRIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferris}/playwright-core-$PLAYWRIGHT_VERSION"

die() { printf 'browser.sh: %s\n' "$*" >&2; exit 1; }

chromium="${FERRIS_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  [[ -z "${FERRIS_CHROMIUM:-}" ]] || die "FERRIS_CHROMIUM=$chromium is not an executable file"
  command -v apt-get >/dev/null 2>&1 || die "no $chromium and no apt-get: set FERRIS_CHROMIUM"
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  printf 'browser.sh: installing Debian'"'"'s chromium (apt-get)\n' >&2
  "${sudo[@]}" apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    chromium >&2 || die "apt-get install chromium failed"
fi

if [[ ! -f "$cache/node_modules/playwright-core/package.json" ]]; then
  command -v npm >/dev/null 2>&1 || die "npm not found (Debian: apt-get install nodejs npm)"
  printf 'browser.sh: installing playwright-core %s into %s\n' "$PLAYWRIGHT_VERSION" "$cache" >&2
  mkdir -p "$cache"
  # Into a temporary folder first, so that an interrupted install is not taken for one.
  partial="$(mktemp -d "$cache.XXXXXX")"
  npm install --prefix "$partial" --no-save --no-audit --no-fund --ignore-scripts \
    "playwright-core@$PLAYWRIGHT_VERSION" >&2 || { rm -rf "$partial"; die "npm install playwright-core failed"; }
  rm -rf "$cache"
  mv "$partial" "$cache"
fi
printf '%s\n' "$cache/node_modules"
