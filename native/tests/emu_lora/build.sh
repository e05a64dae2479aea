#!/bin/sh
# build.sh: the native matmul / lora CUDA tests (test_cuda_ops.cc, test_cuda_lora.cc) and,
# with --addon, the Node addon, linked against a CPU emulation of the CUDA execution
# model instead of a GPU: a developer check of native/cuda/gemm.cuh, matmul.cu and
# lora.cu (indexing, cp.async pipeline and barriers, ldmatrix / mma.sync fragment
# layouts, epilogues, host orchestration) on a machine without a GPU. Not part of the
# build, and no substitute for the GPU run (no timing, no real memory model, its own mma
# summation order, misaligned vector stores do not fault on the host).
# The emulation (emu.h, emu_backend.cc, include/cuda_runtime.h) is the c-infonce
# branch's native/tests/emu, extended here: cp.async src-size 0..16 (partial copies with
# zero fill), float4 / uint4, a few intrinsics, cuda_fp16.h, the shared-memory opt-in
# attribute; matmul is not stubbed (matmul.cu runs emulated). Needs a built tree (npm run
# build:native) for the CPU objects; x86-64 Linux, g++.
#
#   sh native/tests/emu_lora/build.sh [--addon]
#   build/emu_lora/emu_tests cuda_lora           # the lora cases (~1-3 min each here)
#   build/emu_lora/emu_tests cuda_matmul_tensor  # the tensor-core GEMM cases
#   LLM2CLIP_ADDON=$PWD/build/emu_lora/llm2clip.node npx jest test/lora.test.ts -t CUDA
set -e
E=$(cd "$(dirname "$0")" && pwd)
WT=$(cd "$E/../../.." && pwd)
OUT="$WT/build/emu_lora"
mkdir -p "$OUT/gen"
python3 "$E/transform.py" "$WT/native/cuda/gemm.cuh" "$OUT/gen/gemm.cuh"
python3 "$E/transform.py" "$WT/native/cuda/matmul.cu" "$OUT/gen/matmul_emu.cc"
python3 "$E/transform.py" "$WT/native/cuda/lora.cu" "$OUT/gen/lora_emu.cc"
FLAGS="-std=c++17 -O2 -g -fPIC -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -I$E/include -I$E \
  -I$WT/native/include -I$WT/native/core -I$WT/native/cuda -I$WT/native/tests"
OBJ="$WT/build/CMakeFiles/l2c_core.dir/native"
for f in "$OUT/gen/matmul_emu.cc" "$OUT/gen/lora_emu.cc" "$E/emu_backend.cc" "$WT/native/tests/test_cuda_lora.cc" \
         "$WT/native/tests/test_cuda_ops.cc" "$WT/native/tests/test_main.cc"; do
  g++ $FLAGS -c "$f" -o "$OUT/$(basename "$f" | sed 's/\.[a-z]*$//').o"
done
g++ -o "$OUT/emu_tests" "$OUT/matmul_emu.o" "$OUT/lora_emu.o" "$OUT/emu_backend.o" "$OUT/test_cuda_lora.o" \
  "$OUT/test_cuda_ops.o" "$OUT/test_main.o" "$OBJ"/core/*.o "$OBJ"/cpu/*.o -lpthread
if [ "$1" = "--addon" ]; then
  g++ -shared -o "$OUT/llm2clip.node" "$OUT/matmul_emu.o" "$OUT/lora_emu.o" "$OUT/emu_backend.o" \
    "$WT"/build/CMakeFiles/llm2clip_addon.dir/native/napi/*.o "$OBJ"/core/*.o "$OBJ"/cpu/*.o -lpthread
fi
echo "built $OUT/emu_tests"
