#!/bin/sh
# golden-check.sh BUILD_DIR: runs `moekit run` on the tiny F32 model under MOEKIT_MAX_ISA=ref, avx2 and avx512, and
# compares each run with the independent NumPy golden (golden.py): the prefill logits and every decode step's logits
# within GOLDEN_TOL relative (max |a-b| / max |b|), the same greedy tokens as the golden, and the same tokens on
# every ISA. Prints one PASS/FAIL line; exits non-zero on FAIL. Called by `make golden-check` (golden.mk), which
# first builds BUILD_DIR/moekit, installs python3-numpy if needed and generates BUILD_DIR/tiny-f32.
set -u

B=${1:?usage: golden-check.sh BUILD_DIR}
PY=${GOLDEN_PYTHON:-/usr/bin/python3}
PROMPT=${GOLDEN_PROMPT:-1,5,9,2,7,3,8,4}
MAX_NEW=${GOLDEN_MAX_NEW:-5}   # 5 tokens = the prefill + 4 decode steps
TOL=${GOLDEN_TOL:-1e-4}
HERE=$(dirname "$0")
MODEL=$B/tiny-f32
OUT=$B/golden
mkdir -p "$OUT"

start=$(date +%s.%N)
fail=0
cases=""
first_tokens=""
token_msg=""
for isa in ref avx2 avx512; do
    log=$OUT/run-$isa.txt
    if ! MOEKIT_MAX_ISA=$isa "$B/moekit" run --model "$MODEL" --prompt "$PROMPT" --max-new "$MAX_NEW" \
            --dump-logits "$OUT/logits-$isa.bin" >"$log" 2>&1; then
        echo "golden-check: moekit run failed with MOEKIT_MAX_ISA=$isa:" >&2
        cat "$log" >&2
        fail=1
        continue
    fi
    tokens=$(sed -n 's/^generated: //p' "$log")
    used=$(sed -n 's/^run: isa \([a-z0-9]*\),.*/\1/p' "$log")
    echo "moekit MOEKIT_MAX_ISA=$isa (isa used: $used): generated $tokens"
    cases="$cases --case $isa:$OUT/logits-$isa.bin:$tokens"
    if [ -z "$first_tokens" ]; then
        first_tokens=$tokens
    elif [ "$tokens" != "$first_tokens" ]; then
        token_msg="$token_msg; $isa tokens $tokens differ from ref's $first_tokens"
        fail=1
    fi
done

if [ -n "$cases" ]; then
    # shellcheck disable=SC2086 # $cases is a word list on purpose
    if ! "$PY" "$HERE/golden.py" compare --model "$MODEL" --prompt "$PROMPT" --max-new "$MAX_NEW" --tol "$TOL" \
            $cases; then
        fail=1
    fi
fi

secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
if [ "$fail" -eq 0 ]; then
    echo "golden-check: PASS (tiny f32 model, ISAs ref/avx2/avx512 agree with the NumPy golden; ${secs} s)"
    exit 0
fi
echo "golden-check: FAIL${token_msg} (see above; ${secs} s)"
exit 1
