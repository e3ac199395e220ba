#!/usr/bin/env bash
# The fuzz tier: builds the cargo-fuzz targets in fuzz/ and runs each for a
# bounded time (RKUBE_FUZZ_SECONDS, default 30) from a copy of its committed
# corpus (fuzz/corpus/<target>/), so runs never dirty the checkout. Any crash,
# panic, leak or timeout fails the run and prints the input that caused it.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz
# --locked`); without them it prints "RKUBE-SKIP: fuzz: <why>" and exits 0
# (scripts/test.sh fails CI on that line).
#
#   scripts/fuzz.sh                 every target, 30 s each
#   scripts/fuzz.sh selector dns_packet
#   RKUBE_FUZZ_SECONDS=600 scripts/fuzz.sh manifest
#   RKUBE_FUZZ_TARGET_DIR=/var/cache/rkube/target-fuzz scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${RKUBE_FUZZ_SECONDS:-30}"
toolchain="${RKUBE_FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  echo "RKUBE-SKIP: fuzz: no $toolchain toolchain (rustup toolchain install $toolchain)"
  exit 0
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
  echo "RKUBE-SKIP: fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  exit 0
fi

# cargo-fuzz builds into fuzz/target (git-ignored) unless
# RKUBE_FUZZ_TARGET_DIR names a warm cache (CI's does). The workspace's
# CARGO_TARGET_DIR is not shared: the sanitizer flags would rebuild it all.
unset CARGO_TARGET_DIR
target_dir=()
if [ -n "${RKUBE_FUZZ_TARGET_DIR:-}" ]; then
  mkdir -p "$RKUBE_FUZZ_TARGET_DIR"
  target_dir=(--target-dir "$RKUBE_FUZZ_TARGET_DIR")
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cd fuzz

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

echo "== fuzz: build (${targets[*]})"
cargo "+$toolchain" fuzz build "${target_dir[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  if [ -d "corpus/$t" ]; then
    cp -r "corpus/$t/." "$work/corpus/$t/"
  fi
  echo "== fuzz: $t for ${seconds}s"
  set +e
  cargo "+$toolchain" fuzz run "${target_dir[@]}" "$t" "$work/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 \
    >"$work/$t.log" 2>&1
  rc=$?
  set -e
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)|^#[0-9]+ +DONE" "$work/$t.log" | sed "s/^/  $t: /" || true
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); last lines:" >&2
    tail -n 40 "$work/$t.log" >&2
    keep="${RKUBE_FUZZ_ARTIFACTS:-$PWD/artifacts}/$t"
    mkdir -p "$keep"
    for a in "$work/artifacts/$t"/*; do
      [ -e "$a" ] || continue
      cp "$a" "$keep/"
      echo "fuzz: crash input: $keep/$(basename "$a")" >&2
    done
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzz: all ${#targets[@]} targets ran ${seconds}s each without a crash"
