#!/bin/sh
# install-fuzz-deps.sh: makes sure a clang that can build libFuzzer harnesses (-fsanitize=fuzzer,address,undefined)
# is present, for `make fuzz` / `make fuzz-smoke` (tests/fuzz/run.sh). Quiet when it already is.
#   exit 0  ready (the compiler is ${FUZZ_CC:-clang})
#   exit 3  cannot install: apt-get is not available, or we are not root and sudo is missing (callers skip)
#   exit 1  the installation itself failed
# Debian packages: clang (the compiler) and libclang-rt-dev (libFuzzer's runtime, only Recommended by clang).
set -eu

CC_FUZZ=${FUZZ_CC:-clang}

can_fuzz() {
    command -v "$CC_FUZZ" >/dev/null 2>&1 || return 1
    tmp=$(mktemp -d 2>/dev/null || echo "/tmp/moekit-fuzz-probe.$$")
    mkdir -p "$tmp"
    printf '%s\n' '#include <stdint.h>' '#include <stddef.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' > "$tmp/probe.c"
    ok=0
    "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" >/dev/null 2>&1 || ok=1
    rm -rf "$tmp"
    return $ok
}

can_fuzz && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "install-fuzz-deps.sh: $CC_FUZZ with libFuzzer is missing; not root and sudo is not available" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-fuzz-deps.sh: $CC_FUZZ with libFuzzer is missing and apt-get is not available" >&2
    exit 3
fi

echo "install-fuzz-deps.sh: installing clang libclang-rt-dev" >&2
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang libclang-rt-dev \
        >/dev/null; then
    # older/newer releases name the runtime after clang's major version only
    major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
    [ -n "$major" ] && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "libclang-rt-$major-dev" >/dev/null || true
fi
if can_fuzz; then
    exit 0
fi
echo "install-fuzz-deps.sh: installed, but $CC_FUZZ still cannot link -fsanitize=fuzzer" >&2
exit 1
