#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after SECONDS) for SECONDS (default 600) from the committed seeds, one after another,
# and prints libFuzzer's final statistics (the figures in BENCHMARKS.md come from this script).
# CI runs it with a short time as a smoke test. Needs `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(import_csv import_jsonl campaign_file template token bounce_report)
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target.log"
    echo "== $target (${seconds}s)"
    # bounce_report runs without debug assertions: mail-parser 0.11.9 has a debug_assert!
    # that malformed MIME reaches (compiled out of release builds; reports::parse also catches
    # it in debug builds, tested with the input that found it). libFuzzer aborts on any panic,
    # so with debug assertions on it would only ever find that one.
    flags=()
    [ "$target" = bounce_report ] && flags=(--release)
    if ! cargo fuzz run "${flags[@]}" "$target" --sanitizer none "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 -max_len=65536 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
        echo "FINDING or failure in $target:"
        tail -40 "$log"
        status=1
        continue
    fi
    grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|Done)|cov: .* corp:" "$log" | tail -5
done
exit "$status"
