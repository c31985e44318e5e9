// gbc.cc: the C++ side of gbc.h, one-line forwarders onto Google Benchmark 1.7.1. Google Benchmark does not throw,
// so no exception ever crosses the extern "C" boundary. Link the bench program with g++ (or add -lstdc++).
#include "gbc.h"

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace {
benchmark::State &S(gbc_state *st) { return *reinterpret_cast<benchmark::State *>(st); }
benchmark::internal::Benchmark *B(gbc_bench *b) { return reinterpret_cast<benchmark::internal::Benchmark *>(b); }
}  // namespace

extern "C" {

void gbc_initialize(int *argc, char **argv) { benchmark::Initialize(argc, argv); }
int gbc_report_unrecognized(int argc, char **argv) { return benchmark::ReportUnrecognizedArguments(argc, argv); }
int64_t gbc_run_specified(void) { return (int64_t)benchmark::RunSpecifiedBenchmarks(); }
void gbc_shutdown(void) { benchmark::Shutdown(); }
void gbc_add_context(const char *key, const char *value) { benchmark::AddCustomContext(key, value); }

gbc_bench *gbc_register(const char *name, gbc_fn fn, void *user) {
    benchmark::internal::Benchmark *b = benchmark::RegisterBenchmark(
        name, [fn, user](benchmark::State &st) { fn(reinterpret_cast<gbc_state *>(&st), user); });
    return reinterpret_cast<gbc_bench *>(b);
}

void gbc_args(gbc_bench *b, const int64_t *args, int n_args) {
    B(b)->Args(std::vector<int64_t>(args, args + n_args));
}

void gbc_set_unit(gbc_bench *b, gbc_unit unit) {
    static const benchmark::TimeUnit units[] = {benchmark::kNanosecond, benchmark::kMicrosecond,
                                                benchmark::kMillisecond, benchmark::kSecond};
    B(b)->Unit(units[unit >= GBC_NS && unit <= GBC_S ? unit : GBC_US]);
}

void gbc_use_real_time(gbc_bench *b) { B(b)->UseRealTime(); }
void gbc_min_time(gbc_bench *b, double seconds) { B(b)->MinTime(seconds); }
void gbc_repetitions(gbc_bench *b, int n) { B(b)->Repetitions(n); }
void gbc_iterations(gbc_bench *b, int64_t n) { B(b)->Iterations((benchmark::IterationCount)n); }
void gbc_threads(gbc_bench *b, int n) { B(b)->Threads(n); }

int gbc_keep_running(gbc_state *st) { return S(st).KeepRunning(); }
int gbc_keep_running_batch(gbc_state *st, int64_t n) {
    return S(st).KeepRunningBatch((benchmark::IterationCount)n);
}
int64_t gbc_range(gbc_state *st, int i) { return S(st).range((std::size_t)i); }
int64_t gbc_iterations_done(gbc_state *st) { return (int64_t)S(st).iterations(); }
int gbc_thread_index(gbc_state *st) { return S(st).thread_index(); }
void gbc_pause(gbc_state *st) { S(st).PauseTiming(); }
void gbc_resume(gbc_state *st) { S(st).ResumeTiming(); }
void gbc_set_label(gbc_state *st, const char *label) { S(st).SetLabel(label); }
void gbc_skip_with_error(gbc_state *st, const char *message) { S(st).SkipWithError(message); }
void gbc_set_bytes_processed(gbc_state *st, int64_t bytes) { S(st).SetBytesProcessed(bytes); }
void gbc_set_items_processed(gbc_state *st, int64_t items) { S(st).SetItemsProcessed(items); }

void gbc_set_counter(gbc_state *st, const char *name, double value, unsigned flags) {
    unsigned f = 0;
    if (flags & GBC_RATE) f |= benchmark::Counter::kIsRate;
    if (flags & GBC_AVG_THREADS) f |= benchmark::Counter::kAvgThreads;
    if (flags & GBC_ITER_INVARIANT) f |= benchmark::Counter::kIsIterationInvariant;
    if (flags & GBC_AVG_ITERATIONS) f |= benchmark::Counter::kAvgIterations;
    if (flags & GBC_INVERT) f |= benchmark::Counter::kInvert;
    S(st).counters[name] =
        benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(f), benchmark::Counter::kIs1000);
}

}  // extern "C"
