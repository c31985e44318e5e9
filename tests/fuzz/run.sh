#!/bin/sh
# run.sh: builds and runs the libFuzzer harnesses of the checkpoint loader (model/json.c, config.c, safetensors.c).
#   sh tests/fuzz/run.sh smoke [BUILD_DIR]   each harness for FUZZ_RUNS (200000) inputs, at most FUZZ_TIME (20) s
#   sh tests/fuzz/run.sh long  [BUILD_DIR]   each harness for FUZZ_TIME seconds (300)
#   sh tests/fuzz/run.sh build [BUILD_DIR]   only build BUILD_DIR/fuzz/fuzz_{config,safetensors}
# Run from the top of the tree. New inputs go to BUILD_DIR/fuzz/corpus_*; the committed seeds in
# tests/fuzz/corpus_* are only read. A crash leaves BUILD_DIR/fuzz/artifacts/crash-* and fails the run.
# When clang with libFuzzer cannot be installed (no apt-get, or no root/sudo), the run is skipped with a message.
set -eu

mode=${1:-smoke}
B=${2:-build}
CC_FUZZ=${FUZZ_CC:-clang}
out="$B/fuzz"

status=0
sh tools/install-fuzz-deps.sh || status=$?
if [ "$status" -eq 3 ]; then
    echo "fuzz: SKIPPED: clang with libFuzzer is not available and cannot be installed here" >&2
    exit 0
elif [ "$status" -ne 0 ]; then
    exit "$status"
fi

mkdir -p "$out/artifacts"
SRCS="model/json.c model/config.c model/safetensors.c model/util.c dispatch/status.c"
FLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Iinclude -Idispatch -Imodel -Wall -Wextra -Wno-unused-parameter"
for h in config safetensors; do
    # shellcheck disable=SC2086 # word lists on purpose
    "$CC_FUZZ" $FLAGS "tests/fuzz/fuzz_$h.c" $SRCS -o "$out/fuzz_$h"
done
[ "$mode" = build ] && exit 0

case "$mode" in
smoke) limits="-runs=${FUZZ_RUNS:-200000} -max_total_time=${FUZZ_TIME:-20}" ;;
long) limits="-max_total_time=${FUZZ_TIME:-300}" ;;
*) echo "usage: sh tests/fuzz/run.sh smoke|long|build [BUILD_DIR]" >&2; exit 2 ;;
esac

for h in config safetensors; do
    mkdir -p "$out/corpus_$h"
    echo "fuzz: $h ($mode: $limits)"
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
        "$out/fuzz_$h" $limits -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/" "$out/corpus_$h" "tests/fuzz/corpus_$h" 2>"$out/fuzz_$h.log" || {
        tail -n 60 "$out/fuzz_$h.log" >&2
        echo "fuzz: $h FAILED (log: $out/fuzz_$h.log, inputs: $out/artifacts/)" >&2
        exit 1
    }
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|Done [0-9]+ runs)' "$out/fuzz_$h.log" | tail -n 2
done
