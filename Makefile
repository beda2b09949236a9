# pdctl: the two commands are `make run` and `make test` (see README.md).
BUILD_DIR     ?= build
SAN_BUILD_DIR ?= build-sanitize
PORTABLE      ?= 0
CUDA          ?= AUTO
JOBS          ?= $(shell nproc)

ifeq ($(PORTABLE),1)
  PORTABLE_FLAG := -DPDCTL_PORTABLE=ON
else
  PORTABLE_FLAG := -DPDCTL_PORTABLE=OFF
endif
CMAKE_FLAGS := -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(PORTABLE_FLAG) -DPDCTL_CUDA=$(CUDA)

.PHONY: all build deps test test-unit test-integration test-sanitize run clean

all: build

deps:
	@scripts/install-deps.sh

# Re-running cmake is cheap and picks up new source files and changed options.
build: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) > $(BUILD_DIR).cmake.log 2>&1 || (cat $(BUILD_DIR).cmake.log; exit 1)
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

test-unit: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L unit

test-integration: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -L integration

# AddressSanitizer + UndefinedBehaviorSanitizer over the unit tests (CUDA left out:
# the sanitizers do not cover device code).
test-sanitize: deps
	@cmake -S . -B $(SAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPDCTL_SANITIZE=ON \
	    -DPDCTL_CUDA=OFF $(PORTABLE_FLAG) > $(SAN_BUILD_DIR).cmake.log 2>&1 || (cat $(SAN_BUILD_DIR).cmake.log; exit 1)
	@cmake --build $(SAN_BUILD_DIR) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --test-dir $(SAN_BUILD_DIR) --output-on-failure -j $(JOBS) -L unit

# `pdctl up -c config.example.toml`, a 50-request `pdctl bench` through its router, then a
# clean stop (PDCTL_DEMO_CONFIG=FILE picks another deployment).
run: build
	@scripts/run-demo.sh $(BUILD_DIR)/pdctl

clean:
	rm -rf $(BUILD_DIR) $(SAN_BUILD_DIR) $(BUILD_DIR).cmake.log $(SAN_BUILD_DIR).cmake.log
