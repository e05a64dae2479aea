#!/usr/bin/env bash
# bench/gpu/run.sh: the one GPU check. Run it on a machine with an NVIDIA GPU, from the
# repository root: builds the native core with CUDA for this card (plain CMake, no Node
# needed), runs the native test program (every CUDA kernel against its CPU twin), then
# times our CUDA matmul beside torch.matmul through the C library (ctypes) when PyTorch
# is there. Writes a markdown table to ${OUT:-bench/results}/gpu-<card>.md.
# Usage: bash bench/gpu/run.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/../.."
out_dir=${OUT:-bench/results}
mkdir -p "$out_dir"
quick=${1:-}

if ! command -v nvidia-smi >/dev/null 2>&1; then echo "no nvidia-smi: not a GPU machine"; exit 2; fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)
arch=$cc; [ "$cc" = 90 ] && arch=90a
slug=$(echo "$card" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')
report="$out_dir/gpu-$slug.md"
echo "card: $card (sm_$cc, building for $arch)"

t0=$(date +%s)
cmake -S . -B build-gpu -DLLM2CLIP_CUDA=on -DLLM2CLIP_CUDA_ARCHS="$arch" -DCMAKE_BUILD_TYPE=Release >build-gpu.log 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target l2c_native_tests llm2clip_c >>build-gpu.log 2>&1
build_rc=$?
t1=$(date +%s)
{
  echo "# GPU check: $card"
  echo
  echo "Date: $(date -u +%FT%TZ). Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1). Build for sm_$arch: exit $build_rc in $((t1 - t0)) s."
  echo
} >"$report"
if [ $build_rc -ne 0 ]; then
  tail -n 40 build-gpu.log | tee -a "$report"
  exit 1
fi

echo '## Native tests (CUDA against the CPU kernels)' >>"$report"
echo '```' >>"$report"
./build-gpu/Release/l2c_native_tests 2>&1 | tee -a "$report"
tests_rc=${PIPESTATUS[0]}
echo '```' >>"$report"

if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo '## GEMM: ours vs torch.matmul (cuBLAS), same process' >>"$report"
  python3 bench/gpu/gemm_ctypes.py build-gpu/Release/libllm2clip.so $quick 2>&1 | tee -a "$report"
else
  echo 'PyTorch with CUDA not found: GEMM timing skipped.' | tee -a "$report"
fi
echo "report: $report"
exit $tests_rc
