#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration and fault tests against
# real redis-server and mariadbd processes that the test fixtures start on
# free loopback ports (installed with apt first when missing), the API schema
# fuzz (Schemathesis, installed from PyPI into target/tools/), and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-services.sh
bash scripts/install-schemathesis.sh
cargo test --locked "$@"
