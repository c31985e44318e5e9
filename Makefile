# moekit build. `make` builds build/libmoekit.{a,so} and build/moekit (B=dir moves the build tree); `make check` runs every test (plain and
# under AddressSanitizer + UBSan); `make demo` runs `moekit info` and `moekit check`; `make install` installs.
# ISA-specific kernels live in kernels/<isa>/ and are the only files compiled with -m flags.

B        ?= build
CC       ?= cc
CXX      ?= c++
PKG_CONFIG ?= pkg-config
OPT      ?= -O2 -g
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BINDIR   ?= $(PREFIX)/bin

VERSION_MAJOR := $(shell sed -n 's/^\#define MOEKIT_VERSION_MAJOR \([0-9]*\)/\1/p' include/moekit.h)
VERSION_MINOR := $(shell sed -n 's/^\#define MOEKIT_VERSION_MINOR \([0-9]*\)/\1/p' include/moekit.h)
VERSION_PATCH := $(shell sed -n 's/^\#define MOEKIT_VERSION_PATCH \([0-9]*\)/\1/p' include/moekit.h)
VERSION  := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SONAME   := libmoekit.so.$(VERSION_MAJOR)

ARCH     := $(shell $(CC) -dumpmachine | cut -d- -f1)

# Dependencies resolved through pkg-config (tools/install-deps.sh installs what is missing).
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags sleef hwloc 2>/dev/null)
DEP_LIBS   := $(shell $(PKG_CONFIG) --libs sleef hwloc 2>/dev/null || echo -lsleef -lhwloc) -lm -lpthread
CRIT_CFLAGS := $(shell $(PKG_CONFIG) --cflags criterion 2>/dev/null)
CRIT_LIBS   := $(shell $(PKG_CONFIG) --libs criterion 2>/dev/null || echo -lcriterion)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -Iinclude -Idispatch -Ikernels -Imodel $(WARN) $(DEP_CFLAGS)
CFLAGS_ALL = $(BASE_CFLAGS) $(OPT) $(CFLAGS)

# Per-ISA flags (never -march=native).
ISA_FLAGS_avx2   := -mavx2 -mfma -mf16c
ISA_FLAGS_avx512 := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni

GENERIC_SRCS := $(wildcard dispatch/*.c) $(wildcard kernels/ref/*.c) $(wildcard autotune/*.c)
ifeq ($(ARCH),x86_64)
ISA_SRCS_avx2   := $(wildcard kernels/avx2/*.c)
ISA_SRCS_avx512 := $(wildcard kernels/avx512/*.c)
ISA_DEFS := $(if $(ISA_SRCS_avx2),-DMOEKIT_HAVE_AVX2) $(if $(ISA_SRCS_avx512),-DMOEKIT_HAVE_AVX512)
endif
LIB_SRCS := $(GENERIC_SRCS) $(ISA_SRCS_avx2) $(ISA_SRCS_avx512)

MODEL_SRCS := $(wildcard model/*.c)
TOOL_SRCS := $(wildcard tools/*.c) $(MODEL_SRCS)
TEST_SRCS := $(wildcard tests/*.c)
HEADERS   := $(wildcard include/*.h dispatch/*.h kernels/*/*.h kernels/*/*.inc model/*.h tools/*.h tests/*.h)

# Two object trees: $(B)/obj (normal) and $(B)/san (AddressSanitizer + UBSan).
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

obj = $(patsubst %.c,$(B)/$(1)/%.o,$(2))

.PHONY: all lib tool check check-isa check-plain check-san demo install uninstall clean deps
all: lib tool

deps:
	@sh tools/install-deps.sh

lib: $(B)/libmoekit.a $(B)/libmoekit.so
tool: $(B)/moekit

# ---- normal objects
$(B)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_DEFS) $(ISA_FLAGS_$(word 2,$(subst /, ,$<))) -c $< -o $@

# ---- sanitizer objects
$(B)/san/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN_FLAGS) $(ISA_DEFS) $(ISA_FLAGS_$(word 2,$(subst /, ,$<))) -c $< -o $@

$(B)/libmoekit.a: $(call obj,obj,$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(B)/libmoekit.so.$(VERSION): $(call obj,obj,$(LIB_SRCS))
	$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(DEP_LIBS)

$(B)/libmoekit.so: $(B)/libmoekit.so.$(VERSION)
	ln -sf libmoekit.so.$(VERSION) $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(B)/moekit: $(call obj,obj,$(TOOL_SRCS)) $(B)/libmoekit.a
	$(CC) -o $@ $(call obj,obj,$(TOOL_SRCS)) $(B)/libmoekit.a $(DEP_LIBS)

# Test objects are linked directly (Criterion registers tests through ELF sections).
$(B)/obj/tests/%.o: tests/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CRIT_CFLAGS) -c $< -o $@
$(B)/san/tests/%.o: tests/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN_FLAGS) $(CRIT_CFLAGS) -c $< -o $@

$(B)/moekit-tests: $(call obj,obj,$(TEST_SRCS) $(MODEL_SRCS)) $(B)/libmoekit.a
	$(CC) -o $@ $(call obj,obj,$(TEST_SRCS) $(MODEL_SRCS)) $(B)/libmoekit.a $(CRIT_LIBS) $(DEP_LIBS)

$(B)/moekit-tests-san: $(call obj,san,$(TEST_SRCS)) $(call obj,san,$(MODEL_SRCS)) $(call obj,san,$(LIB_SRCS))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(CRIT_LIBS) $(DEP_LIBS)

# Test runs: plain, then under sanitizers. Each prints Criterion's Synthesis line with the real count.
TEST_JOBS ?= 2
# Order: benchmark smoke, fuzz smoke, the golden model check, the suite under MOEKIT_MAX_ISA=ref and =avx2 (so the
# AVX2 kernels are tested on an AVX-512 machine too), then the suite at the best ISA, then under ASan + UBSan. The
# last line printed is Criterion's Synthesis line of the sanitizer run.
check: deps
	@$(MAKE) --no-print-directory all $(B)/moekit-tests $(B)/moekit-tests-san
	@$(MAKE) --no-print-directory bench-smoke fuzz-smoke golden-check check-isa check-plain check-san

# The Criterion suite with the dispatcher capped at each lower ISA (a cap above the CPU's own level is harmless).
CHECK_ISAS ?= ref avx2
check-isa: $(B)/moekit-tests
	@for isa in $(CHECK_ISAS); do \
	  echo "== Criterion suite with MOEKIT_MAX_ISA=$$isa"; \
	  MOEKIT_MAX_ISA=$$isa $(B)/moekit-tests --jobs $(TEST_JOBS) -S || exit 1; \
	done

check-plain: $(B)/moekit-tests $(B)/moekit
	$(B)/moekit check --quick
	$(B)/moekit-tests --jobs $(TEST_JOBS) -S

check-san: $(B)/moekit-tests-san
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(B)/moekit-tests-san --jobs $(TEST_JOBS) -S

demo: deps
	@$(MAKE) --no-print-directory all
	$(B)/moekit info
	$(B)/moekit check
	@test -f $(B)/tiny/model.safetensors || $(B)/moekit gen --preset tiny --seed 1 --out $(B)/tiny
	$(B)/moekit run --model $(B)/tiny --prompt 1,5,9,2,7,3,8,4 --max-new 16

# ---- install
$(B)/moekit.pc: Makefile
	@mkdir -p $(B)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: moekit' 'Description: Kernels for Mixture-of-Experts transformer blocks (openPangu-R family)' \
	  'Version: $(VERSION)' 'Requires.private: sleef hwloc' 'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lmoekit' 'Libs.private: -lm -lpthread' > $@

install: all $(B)/moekit.pc
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 0644 include/moekit.h $(DESTDIR)$(INCLUDEDIR)/moekit.h
	install -m 0644 $(B)/libmoekit.a $(DESTDIR)$(LIBDIR)/libmoekit.a
	install -m 0755 $(B)/libmoekit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libmoekit.so.$(VERSION)
	ln -sf libmoekit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmoekit.so
	install -m 0644 $(B)/moekit.pc $(DESTDIR)$(PKGCONFIGDIR)/moekit.pc
	install -m 0755 $(B)/moekit $(DESTDIR)$(BINDIR)/moekit

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/moekit.h $(DESTDIR)$(LIBDIR)/libmoekit.a $(DESTDIR)$(LIBDIR)/libmoekit.so* \
	  $(DESTDIR)$(PKGCONFIGDIR)/moekit.pc $(DESTDIR)$(BINDIR)/moekit

clean:
	rm -rf $(B)

# Fragments: benchmarks (make bench, bench-smoke), the model's fuzzers (fuzz, fuzz-smoke), the golden model check.
-include bench/bench.mk
-include model/model.mk
include tests/golden/golden.mk
