# bench/bench.mk: the benchmark suite (included by the main Makefile: -include bench/bench.mk).
#   make bench        install the bench-only packages if missing, build, run everything, write $(B)/bench.json,
#                     docs/performance.md and docs/plots/*.png (about 10-15 minutes on 2 Zen 5 cores)
#   make bench-smoke  build and run every benchmark once on tiny shapes (part of make check; needs no peers)
# Uses the main Makefile's $(B), $(CC), $(CXX), $(CFLAGS_ALL), $(DEP_LIBS), $(ISA_FLAGS_*), $(PKG_CONFIG), $(ARCH).

BENCH_MIN_TIME ?= 0.2
BENCH_PYTHON   ?= /usr/bin/python3
BENCH_FLAGS    ?=
GBENCH_CFLAGS  := $(shell $(PKG_CONFIG) --cflags benchmark 2>/dev/null)
GBENCH_LIBS    := $(shell $(PKG_CONFIG) --libs benchmark 2>/dev/null || echo -lbenchmark) -lpthread -ldl

BENCH_C_SRCS   := bench/main.c bench/common.c bench/limits.c bench/ops.c bench/gemm.c bench/peers.c
ifeq ($(ARCH),x86_64)
BENCH_C_SRCS   += bench/limits_avx2.c bench/limits_avx512.c
endif
BENCH_OBJS     := $(patsubst bench/%.c,$(B)/bench/%.o,$(BENCH_C_SRCS)) $(B)/bench/gbc.o
BENCH_HDRS     := bench/bench.h bench/gbc.h include/moekit.h

# Only the limit kernels get ISA flags, each its own (never -march=native).
$(B)/bench/limits_avx2.o: BENCH_ISA_FLAGS = $(ISA_FLAGS_avx2)
$(B)/bench/limits_avx512.o: BENCH_ISA_FLAGS = $(ISA_FLAGS_avx512)

$(B)/bench/%.o: bench/%.c $(BENCH_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ibench $(BENCH_ISA_FLAGS) -c $< -o $@

$(B)/bench/gbc.o: bench/gbc.cc bench/gbc.h
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra $(GBENCH_CFLAGS) -c $< -o $@

# Linked with the C++ driver: Google Benchmark is C++.
$(B)/moekit-bench: $(BENCH_OBJS) $(B)/libmoekit.a
	$(CXX) -o $@ $(BENCH_OBJS) $(B)/libmoekit.a $(DEP_LIBS) $(GBENCH_LIBS)

.PHONY: bench bench-build bench-smoke bench-deps bench-report
bench-build: $(B)/moekit-bench

bench-deps:
	@sh tools/install-bench-deps.sh

# Two invocations: the main one (limits, moekit at every ISA, the reference kernels, OpenBLAS as the library
# detects the CPU, oneDNN), then OpenBLAS again with its core type forced to SkylakeX, which it only reads when the
# library loads. bench-report merges them into $(B)/bench.json.
bench: deps bench-deps
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) $(B)/moekit-bench
	env -u OPENBLAS_CORETYPE $(B)/moekit-bench $(BENCH_FLAGS) --benchmark_min_time=$(BENCH_MIN_TIME) \
	  --benchmark_out=$(B)/bench-main.json --benchmark_out_format=json
	OPENBLAS_CORETYPE=SkylakeX $(B)/moekit-bench $(BENCH_FLAGS) --benchmark_filter='impl:openblas' \
	  --benchmark_min_time=$(BENCH_MIN_TIME) --benchmark_out=$(B)/bench-openblas-skx.json --benchmark_out_format=json
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) bench-report

bench-report:
	$(BENCH_PYTHON) tools/bench-report --json-out $(B)/bench.json --md docs/performance.md --plots docs/plots \
	  $(B)/bench-main.json $(B)/bench-openblas-skx.json

# Timing is never asserted: this only proves that every benchmark builds, runs and gets valid arguments (a
# benchmark that fails, rather than being skipped, fails the target). The console output goes to a log.
bench-smoke: $(B)/moekit-bench
	@$(B)/moekit-bench --smoke --benchmark_min_time=0.0005 --benchmark_out=$(B)/bench-smoke.json \
	  --benchmark_out_format=json > $(B)/bench-smoke.log 2>&1 || { cat $(B)/bench-smoke.log; exit 1; }
	@tail -n 1 $(B)/bench-smoke.log
