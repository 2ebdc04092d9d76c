#!/usr/bin/env bash
# One-time set-up on Debian 12 with Python 3.11, safe to run again: system packages the tests and
# benchmarks drive (ffmpeg as a real player, promtool to check the metrics, nginx as the benchmark
# baseline, wrk as the benchmark load generator, chromium + a font for the web page's browser tests,
# npm for hls.js), then hls.js from package-lock.json (npm ci) and a virtualenv in .venv with the
# project and its test/dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# Debian's chromium, driven by playwright (never playwright's own browser download)
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need+=(fonts-dejavu-core)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${need[*]} with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the nginx package starts a system service on port 80; the benchmarks run their own instances
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
  $SUDO pkill -x nginx >/dev/null 2>&1 || true
fi

# hls.js for the web page, exactly as locked (the proxy serves it from node_modules)
npm ci --no-audit --no-fund --loglevel=error

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup: done (.venv and node_modules ready; ffmpeg, promtool, nginx, wrk, chromium and npm installed)" >&2
