# model.mk: targets of the reference model's checkpoint loader, included by the main Makefile
# (`-include model/model.mk`; it may go anywhere: it leaves the default goal alone). The fuzz harnesses build with
# clang -fsanitize=fuzzer,address,undefined (tools/install-fuzz-deps.sh installs clang when it is missing;
# tests/fuzz/run.sh skips with a message when it cannot, i.e. without apt-get or root/sudo).
#   make fuzz-smoke   each harness for 200000 inputs, at most 20 s each: part of `make check`
#   make fuzz         each harness for FUZZ_TIME seconds (default 300): long, local
#   make fuzz-build   only build $(B)/fuzz/fuzz_{config,safetensors}
# New inputs go to $(B)/fuzz/corpus_*; crashes to $(B)/fuzz/artifacts/ (the run then fails).
MKM_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz-smoke:
	@sh tests/fuzz/run.sh smoke $(B)

fuzz:
	@sh tests/fuzz/run.sh long $(B)

fuzz-build:
	@sh tests/fuzz/run.sh build $(B)

.DEFAULT_GOAL := $(MKM_SAVED_DEFAULT_GOAL)
