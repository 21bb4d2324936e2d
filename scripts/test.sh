#!/usr/bin/env bash
# The README's test command: installs what is needed, builds, runs every test
# that needs no GPU (GPU tests skip themselves when no device opens), then
# the sanitizer runs: unit and integration tests under ASan + UBSan
# (build-asan/), the server's integration tests and threaded unit tests
# under TSan (build-tsan/).
# DEMIX_SANITIZERS=0 skips the sanitizer runs; DEMIX_FUZZ_SECONDS=0 the
# fuzzing. Each stage prints its wall time (the CI budget: docs in
# DEVELOPERS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
stage_start=$SECONDS
stage() { # NAME: the time since the last stage
  echo "test.sh: $1 took $((SECONDS - stage_start)) s"
  stage_start=$SECONDS
}
scripts/install-deps.sh
scripts/build.sh "$@"
stage build
# The parsers of untrusted input are fuzzed first (clang + libFuzzer), for
# DEMIX_FUZZ_SECONDS each (default 60; 0 skips).
fuzz_seconds="${DEMIX_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" -gt 0 ]; then
  scripts/fuzz.sh "$fuzz_seconds"
  stage fuzz
fi
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 600)
stage tests

if [ "${DEMIX_SANITIZERS:-1}" = 0 ]; then
  exit 0
fi
# No CUDA (the sanitizers do not see into device code) and no benchmark
# programs: the tests and the two programs they run. The tests' liveness
# bounds stretch 5 times (steps are several times slower), and the few
# assertions that only timing decides are not made (DEMIX_TEST_SANITIZER:
# tests/integration/server_fixture.h).
san_args=(-DDEMIX_CUDA=OFF -DDEMIX_BENCH=OFF)
export DEMIX_TEST_SANITIZER=1 DEMIX_TEST_TIMEOUT_SCALE=5
DEMIX_BUILD_DIR=build-asan scripts/build.sh "${san_args[@]}" -DDEMIX_SANITIZE=ON
stage "build (ASan + UBSan)"
# Leaks are errors (LeakSanitizer, on by default with ASan); UBSan's are
# fatal by the build (-fno-sanitize-recover). The soak runs 30 s there:
# the misbehaving clients' paths through demixd, with LeakSanitizer
# checking its heap at exit. The browser, deploy and layout tests add
# nothing for the sanitizers.
# integration_test_loadgen runs alone after the rest: its 1 s sessions
# lose their last hops when the client's own thread is starved past the
# stream's end (ASan makes both sides slower; another test beside it on
# 2 cores did that here).
export DEMIX_SOAK_SECONDS=30 \
  ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1" \
  LSAN_OPTIONS="suppressions=$root/tests/lsan.supp" \
  UBSAN_OPTIONS="print_stacktrace=1"
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 900 \
  -L '^(unit|integration|soak)$' -E '^integration_test_loadgen$'
ctest --test-dir build-asan --output-on-failure --timeout 900 \
  -R '^integration_test_loadgen$'
stage "tests (ASan + UBSan)"
DEMIX_BUILD_DIR=build-tsan scripts/build.sh "${san_args[@]}" -DDEMIX_SANITIZE=thread
stage "build (TSan)"
TSAN_OPTIONS="suppressions=$root/tests/tsan.supp second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -j"$(nproc)" --timeout 900 \
    -R '^(integration_test_server|unit_test_scheduler$|unit_test_spsc_ring$)'
stage "tests (TSan)"
