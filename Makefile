# Thin wrapper over CMake. `make` builds build/synco; `make demo` runs the main job; `make test` runs the suite.
# Both first install missing Debian packages (as root) or list them (otherwise).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
SANITIZE ?= 0
JOBS ?= $(shell nproc)
BUILD := build
CUDA ?= 0
ifeq ($(CUDA),1)
BUILD := build-cuda
CMAKE_FLAGS += -DSYNCO_WITH_CUDA=ON
endif
ifeq ($(SANITIZE),1)
BUILD := build-sanitize
CMAKE_FLAGS += -DSYNCO_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
endif

# Build and run dependencies; the torch packages are only for the parity tests and the comparison benchmarks.
DEBIAN_PACKAGES := build-essential cmake pkg-config libopenblas-dev libturbojpeg0-dev libpng-dev zlib1g-dev \
  libcjson-dev libdnnl-dev libcairo2-dev openmpi-bin libopenmpi-dev libprotobuf-c-dev protobuf-c-compiler
TEST_PACKAGES := python3 python3-torch python3-torchvision python3-numpy python3-pil python3-venv clang libclang-rt-14-dev

.PHONY: all build deps test-deps demo test fuzz install clean

all: build

deps:
	@./tools/install_deps.sh $(DEBIAN_PACKAGES)

test-deps:
	@./tools/install_deps.sh $(DEBIAN_PACKAGES) $(TEST_PACKAGES)

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) | sed -n '/synco .* configuration/,/^-- $$/p'
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory | { grep -vE "^(gmake|\[ *[0-9]+%\] (Building|Linking|Built))"; true; }

demo: build
	./$(BUILD)/synco pretrain

# `make install PREFIX=~/.local` is `cmake --install` (README's "Installing"): bin/synco, the libraries, synco.h, the
# pkg-config and CMake files, the man page and the bundled images.
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

test: test-deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) | sed -n '/synco .* configuration/,/^-- $$/p'
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory | { grep -vE "^(gmake|\[ *[0-9]+%\] (Building|Linking|Built))"; true; }
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (tests/fuzz/fuzz_*.c) built with clang into build-fuzz/, each run FUZZ_SECONDS on its seed
# corpus; fails when one crashes (the input is kept in build-fuzz/). See tests/fuzz/README.
FUZZ_SECONDS ?= 20
fuzz: test-deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) ./tests/fuzz/run_fuzz.sh

clean:
	rm -rf build build-sanitize build-fuzz
