# tests/golden/golden.mk: `make golden-check`, the end-to-end check of the reference model (`moekit run`) against an
# independent NumPy implementation (tests/golden/golden.py, run with /usr/bin/python3 + Debian's python3-numpy).
# Included by the main Makefile (best at its end); uses its B (build directory, default build).
#   1. tests/golden/install-deps.sh: apt-get install python3-numpy when /usr/bin/python3 cannot import numpy
#   2. generates the tiny F32 model once into $(B)/tiny-f32 (`moekit gen --preset tiny --seed 1 --dtype f32`)
#   3. tests/golden/golden-check.sh: `moekit run --dump-logits` under MOEKIT_MAX_ISA=ref, avx2, avx512 vs golden.py
# Knobs (environment): GOLDEN_PROMPT (default 1,5,9,2,7,3,8,4), GOLDEN_MAX_NEW (default 5 = prefill + 4 decode
# steps), GOLDEN_TOL (default 1e-4), GOLDEN_PYTHON (default /usr/bin/python3).

B ?= build

# Keeps the including Makefile's default goal wherever this file is included.
golden_saved_default_goal := $(.DEFAULT_GOAL)

.PHONY: golden-check golden-deps

golden-deps:
	@sh tests/golden/install-deps.sh

# Order-only on the binary: generated once, not again on every rebuild of moekit (`make clean` or deleting the
# directory regenerates it).
$(B)/tiny-f32/model.safetensors: | $(B)/moekit
	@rm -rf $(B)/tiny-f32
	$(B)/moekit gen --preset tiny --seed 1 --dtype f32 --out $(B)/tiny-f32

golden-check: golden-deps $(B)/moekit $(B)/tiny-f32/model.safetensors
	@sh tests/golden/golden-check.sh $(B)

.DEFAULT_GOAL := $(golden_saved_default_goal)
