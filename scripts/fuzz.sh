#!/usr/bin/env bash
# Fuzzes the parsers for a bounded time each: the job envelope, run_at, the
# configuration loader and the HTTP kinds' URL and address guard (targets in
# fuzz/fuzz_targets/). Needs a nightly toolchain for cargo-fuzz; without one,
# the targets are only compiled (their properties also run in the normal
# test suite, tests/parsers.rs). FUZZ_SECONDS sets the time per target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
targets=(envelope run_at config url_guard)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here; compiling the fuzz targets only"
  cargo check --manifest-path fuzz/Cargo.toml --bins
  echo "fuzz: targets compile; run this script where nightly is installed to fuzz them"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
# Overflow checks on (-a); no sanitizer: the crate has no unsafe code.
flags=(--sanitizer none -a)
if ! cargo +nightly fuzz build "${flags[@]}"; then
  echo "fuzz: building the targets failed"
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! cargo +nightly fuzz run "${flags[@]}" "$target" \
    "$work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    >"$work/$target.log" 2>&1; then
    tail -40 "$work/$target.log"
    echo "fuzz: $target found a failing input; it is in fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^#[0-9]+ +DONE|^Done" "$work/$target.log" | tail -1
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a finding"
