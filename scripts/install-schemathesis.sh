#!/usr/bin/env bash
# Installs Schemathesis from PyPI into a virtualenv under target/tools/ for
# the API schema tests (tests/openapi.rs); does nothing when that version is
# there already. Installs python3 and its venv module with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=4.32.5
venv=target/tools/schemathesis
if [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
rm -rf "$venv"
if ! python3 -m venv "$venv" >/dev/null 2>&1; then
  echo "installing python3-venv with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
"$venv/bin/st" --version
