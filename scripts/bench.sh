#!/usr/bin/env bash
# The benchmark of issue 15: builds the release binary, then runs the
# benchmark harness (tests/it/bench.rs, an ignored test so that it reuses
# the test rig), which writes docs/benchmarks.md.
#
#   scripts/bench.sh                    # ~2.3 GiB environment, 3 runs
#   BENCH_SCALE=0.05 scripts/bench.sh   # 5 % of the files: a quick run
#
# BENCH_DIR (default target/bench) keeps the environments between runs;
# BENCH_RUNS (default 3); BENCH_BIN measures another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in /usr/bin/time pigz zstd tar skopeo docker-registry python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "bench: missing ${missing[*]}; on Debian:" >&2
    echo "  apt-get install time pigz zstd skopeo docker-registry python3-venv valgrind" >&2
    exit 1
fi

export BENCH_DIR="${BENCH_DIR:-$PWD/target/bench}"
if [[ -z "${BENCH_BIN:-}" ]]; then
    cargo build --release
fi
exec cargo test --test it bench::benchmark -- --ignored --exact --nocapture
