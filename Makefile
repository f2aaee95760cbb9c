# The two commands: `make run` and `make test`. Both install missing Debian
# packages, configure and build (Release) before they run anything.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: run test test-asan deps configure build install bench fuzz docs clean

run: build
	bash scripts/run-samples.sh $(BUILD_DIR)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Installs the CLI, the static libraries, their headers and the CMake package
# (find_package(opforge): opforge::core, opforge::operators, ...) under
# PREFIX (default /usr/local).
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

bench: build
	bash bench/run-benchmarks.sh $(BUILD_DIR)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (GCC),
# in its own build folder. Not part of `make test` (about 3x slower).
ASAN_DIR ?= build-asan
test-asan: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPFORGE_SANITIZE=address,undefined -DOPFORGE_BUILD_BENCH=OFF
	cmake --build $(ASAN_DIR) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0 \
	ctest --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS)

# Each parser of untrusted bytes under libFuzzer for FUZZ_SECONDS (clang).
FUZZ_SECONDS ?= 60
fuzz:
	bash bench/fuzz.sh $(FUZZ_SECONDS)

# Regenerates docs/operators.md from the operator registry.
docs: build
	$(BUILD_DIR)/cli/opforge list --markdown > docs/operators.md

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) build-fuzz out
