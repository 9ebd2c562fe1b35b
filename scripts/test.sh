#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration and fault tests against
# real redis-server and mariadbd processes that the test fixtures start on
# free loopback ports (installed with apt first when missing), and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-services.sh
cargo test --locked "$@"
