# The two commands: `make run` and `make test`. Both install missing Debian
# packages, configure and build (Release) before they run anything.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: run test deps configure build bench docs clean

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

bench: build
	bash bench/run-benchmarks.sh $(BUILD_DIR)

# Regenerates docs/operators.md from the operator registry.
docs: build
	$(BUILD_DIR)/cli/opforge list --markdown > docs/operators.md

clean:
	rm -rf $(BUILD_DIR) out
