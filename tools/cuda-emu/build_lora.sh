#!/bin/sh
# build_lora.sh: the native matmul and lora CUDA tests (test_cuda_ops.cc,
# test_cuda_lora.cc) and, with --addon, the Node addon, linked against the CPU emulation
# of the CUDA execution model (emu.h, emu_backend.cc; see build.sh) instead of a GPU: a
# developer check of native/cuda/gemm.cuh, matmul.cu and lora.cu (indexing, the cp.async
# pipeline and its barriers, partial cp.async copies with zero fill, ldmatrix / mma.sync
# fragment layouts, epilogues, dropout masks, host orchestration) on a machine without a
# GPU. Not part of the build, and no substitute for the GPU run (no timing, no real memory
# model, its own mma summation order; misaligned vector stores do not fault on the host).
# The other families' CUDA entries come from their stubs (DEVICE_UNAVAILABLE). Needs a
# built tree (npm run build:native) for the CPU objects; x86-64 Linux, g++.
#
#   sh tools/cuda-emu/build_lora.sh [--addon]
#   build/emu_lora/emu_tests cuda_lora            # the lora cases (minutes here)
#   build/emu_lora/emu_tests cuda_matmul_tensor   # the tensor-core GEMM cases
#   LLM2CLIP_ADDON=$PWD/build/emu_lora/llm2clip.node npx jest test/lora.test.ts -t CUDA
set -e
E=$(cd "$(dirname "$0")" && pwd)
WT=$(cd "$E/../.." && pwd)
OUT="$WT/build/emu_lora"
mkdir -p "$OUT/gen"
python3 "$E/transform_gemm.py" "$WT/native/cuda/gemm.cuh" "$OUT/gen/gemm.cuh"
python3 "$E/transform_gemm.py" "$WT/native/cuda/matmul.cu" "$OUT/gen/matmul_emu.cc"
python3 "$E/transform_gemm.py" "$WT/native/cuda/lora.cu" "$OUT/gen/lora_emu.cc"
FLAGS="-std=c++17 -O2 -g -fPIC -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -DEMU_NO_MATMUL_STUB \
  -I$E/include -I$E -I$WT/native/include -I$WT/native/core -I$WT/native/cuda -I$WT/native/tests"
OBJ="$WT/build/CMakeFiles/l2c_core.dir/native"
objs=""
for f in "$OUT/gen/matmul_emu.cc" "$OUT/gen/lora_emu.cc" "$E/emu_backend.cc" \
         "$WT/native/core/cuda_stub_attention.cc" "$WT/native/core/cuda_stub_infonce.cc" \
         "$WT/native/core/cuda_stub_layers.cc" "$WT/native/core/cuda_stub_train.cc"; do
  o="$OUT/$(basename "$f" | sed 's/\.[a-z]*$//').o"
  g++ $FLAGS -c "$f" -o "$o"
  objs="$objs $o"
done
for f in test_cuda_lora test_cuda_ops test_main; do g++ $FLAGS -c "$WT/native/tests/$f.cc" -o "$OUT/$f.o"; done
g++ -o "$OUT/emu_tests" $objs "$OUT/test_cuda_lora.o" "$OUT/test_cuda_ops.o" "$OUT/test_main.o" \
  "$OBJ"/core/*.o "$OBJ"/cpu/*.o -lpthread
if [ "$1" = "--addon" ]; then
  g++ -shared -o "$OUT/llm2clip.node" $objs "$WT"/build/CMakeFiles/llm2clip_addon.dir/native/napi/*.o \
    "$OBJ"/core/*.o "$OBJ"/cpu/*.o -lpthread
fi
echo "built $OUT/emu_tests"
