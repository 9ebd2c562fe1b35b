#!/usr/bin/env bash
# Installs Schemathesis from PyPI into a virtualenv under target/tools/ for
# the API schema tests (tests/openapi.rs), every package at the version
# pinned in scripts/schemathesis-requirements.txt; does nothing when that
# set is installed already. Installs python3 and its venv module with apt
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=scripts/schemathesis-requirements.txt
venv=target/tools/schemathesis
stamp="$venv/installed-requirements.txt"
if [ -x "$venv/bin/st" ] && cmp -s "$requirements" "$stamp"; then
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
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
"$venv/bin/st" --version
