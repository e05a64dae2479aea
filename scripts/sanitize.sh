#!/usr/bin/env bash
# scripts/sanitize.sh: the native core under AddressSanitizer + UndefinedBehaviorSanitizer.
#   bash scripts/sanitize.sh            build build-asan (CPU only) and run the native tests
#   bash scripts/sanitize.sh --js [jest args...]
#                                       also build the addon with the sanitizers and run the
#                                       JS suite (or the named test files) against it
# Any sanitizer report fails the run (halt_on_error, no recovery). Leak checking is on for
# the native tests; under Node it is off (Node itself keeps allocations until exit) and
# leaks are checked by the memory tests instead (memoryStats back to baseline).
set -uo pipefail
cd "$(dirname "$0")/.."
js=0
if [ "${1:-}" = --js ]; then js=1; shift; fi
jobs=$(nproc)
export LLM2CLIP_SANITIZE="address;undefined"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
t0=$(date +%s)
if [ $js = 0 ]; then
  { cmake -S . -B build-asan -DLLM2CLIP_CUDA=off -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
    cmake --build build-asan -j "$jobs" --target l2c_native_tests; } >build-asan.log 2>&1 ||
    { tail -n 30 build-asan.log; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
  echo "sanitize: built in $(($(date +%s) - t0)) s"
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0 ./build-asan/Release/l2c_native_tests >build-asan/native-tests.log 2>&1
  rc=$?
  tail -n 3 build-asan/native-tests.log
  # The CI's summary line (a sanitizer report aborts the program: counted as a failure).
  line=$(grep -E '^native: [0-9]+ passed' build-asan/native-tests.log | tail -n 1 | sed 's/^native: //')
  if [ $rc -ne 0 ] || [ -z "$line" ]; then echo "0 passed, 1 failed, 0 skipped"; exit 1; fi
  echo "$line"
  exit 0
fi
# The addon through cmake-js (Node-API headers from npm), in its own folder.
LLM2CLIP_CUDA=off node node_modules/cmake-js/bin/cmake-js compile --directory . --out build-asan-addon --config RelWithDebInfo --CDLLM2CLIP_SANITIZE="address;undefined" >/dev/null
echo "sanitize: addon built in $(($(date +%s) - t0)) s"
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:verify_asan_link_order=0 \
  LLM2CLIP_ADDON="$PWD/build-asan-addon/Release/llm2clip.node" npx jest --runInBand "$@"
