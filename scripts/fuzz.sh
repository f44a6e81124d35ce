#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after
# the other, and prints each target's executions and findings.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 600 s, every target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain (or
# RUSTC_BOOTSTRAP=1). Corpora grow in fuzz/corpus/TARGET (not committed),
# starting from the committed seeds in fuzz/seeds/TARGET; a crash lands in
# fuzz/artifacts/TARGET and becomes a regression test in tests/it/fuzz_found.rs.
# Memory is bounded per run (-rss_limit_mb, -malloc_limit_mb): an input
# that claims a huge size must not make the reader allocate it. Leak
# detection is off: the readers' worker threads still hold allocations
# when libFuzzer checks, which it reports as leaks it cannot reproduce
# (each one reran alone without a leak).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-600}
shift || true
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
cargo "${toolchain[@]}" fuzz build -O
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    log=$(mktemp)
    if cargo "${toolchain[@]}" fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=30 -detect_leaks=0 >"$log" 2>&1; then
        outcome="no findings"
    else
        outcome="FINDING: see fuzz/artifacts/$target"
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    corpus=$(find "corpus/$target" -type f | wc -l)
    printf '%-16s %5ss %12s execs  corpus %6s  %s\n' "$target" "$seconds" "$execs" "$corpus" "$outcome"
    if [ "$outcome" != "no findings" ]; then tail -40 "$log"; fi
    rm -f "$log"
done
exit $status
