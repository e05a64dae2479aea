#!/bin/sh
# build.sh: the native infonce CUDA tests (test_cuda_infonce.cc) and, with --addon, the
# Node addon, linked against a CPU emulation of the CUDA execution model (emu.h,
# emu_backend.cc) instead of a GPU: a developer check of native/cuda/infonce.cu's
# indexing, pipeline synchronisation, fragment layouts and host orchestration on a
# machine without a GPU. It is not a substitute for the GPU run (no timing, no real
# memory model, exp2 instead of ex2.approx, its own mma summation order) and is not
# part of the regular build. Needs a built tree (npm run build:native) for the CPU
# objects; x86-64 Linux, g++.
#
#   sh tools/cuda-emu/build.sh [--addon]
#   build/emu/emu_tests cuda_infonce            # the cases (some take minutes here)
#   LLM2CLIP_TEST_VERBOSE=1 build/emu/emu_tests cuda_infonce_small   # error margins
#   LLM2CLIP_ADDON=$PWD/build/emu/llm2clip.node npx jest test/infonce.test.ts -t CUDA
#   EMU_SMS=8 ...                               # the SM count the launch heuristics see
set -e
E=$(cd "$(dirname "$0")" && pwd)
WT=$(cd "$E/../.." && pwd)
OUT="$WT/build/emu"
mkdir -p "$OUT"
python3 "$E/transform.py" "$WT/native/cuda/infonce.cu" "$OUT/infonce_emu.cc"
FLAGS="-std=c++17 -O2 -g -fPIC -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -I$E/include -I$E \
  -I$WT/native/include -I$WT/native/core -I$WT/native/cuda -I$WT/native/tests"
OBJ="$WT/build/CMakeFiles/l2c_core.dir/native"
g++ $FLAGS -c "$OUT/infonce_emu.cc" -o "$OUT/infonce_emu.o"
g++ $FLAGS -c "$E/emu_backend.cc" -o "$OUT/emu_backend.o"
g++ $FLAGS -c "$WT/native/tests/test_cuda_infonce.cc" -o "$OUT/test_cuda_infonce.o"
g++ $FLAGS -c "$WT/native/tests/test_main.cc" -o "$OUT/test_main.o"
g++ -o "$OUT/emu_tests" "$OUT/infonce_emu.o" "$OUT/emu_backend.o" "$OUT/test_cuda_infonce.o" "$OUT/test_main.o" \
  "$OBJ"/core/*.o "$OBJ"/cpu/*.o -lpthread
if [ "$1" = "--addon" ]; then
  g++ -shared -o "$OUT/llm2clip.node" "$OUT/infonce_emu.o" "$OUT/emu_backend.o" \
    "$WT"/build/CMakeFiles/llm2clip_addon.dir/native/napi/*.o "$OBJ"/core/*.o "$OBJ"/cpu/*.o -lpthread
fi
echo "built $OUT/emu_tests"
