#!/usr/bin/env bash
# bench/gpu/run.sh: the one GPU check. From the repository root of a machine with an
# NVIDIA GPU, CUDA 13, CMake and Python (PyTorch optional, Node not needed):
#   1. builds the native core, the native test program and the GPU bench program for the
#      card present (plain CMake), and condenses ptxas's register / spill report;
#   2. runs the native test program: every CUDA op against its CPU twin;
#   3. times our GEMM, attention forward / backward, loraLinear beside its base GEMM and
#      the InfoNCE loss (l2c_gpu_bench), and where PyTorch is present the same work in
#      PyTorch (torch_ref.py: matmul, scaled_dot_product_attention, PEFT-style LoRA, the
#      materialised InfoNCE) in the same run;
#   4. prints the table last; writes gpu-<card>.md and .json to $OUT (or bench/results).
# Environment: L2C_TESTS_TIMEOUT / L2C_BENCH_TIMEOUT / L2C_TORCH_TIMEOUT (seconds; 240 / 200 / 150).
# --build-only: step 1 for sm_80 and sm_90a on any machine (no GPU needed), plus a CPU
#   smoke run of the bench program. --quick: small sizes. Whole run: under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
build_only=0
quick=""
for a in "$@"; do
  case "$a" in
    --build-only) build_only=1 ;;
    --quick) quick=--quick ;;
    *) echo "usage: bash bench/gpu/run.sh [--build-only] [--quick]"; exit 2 ;;
  esac
done
out_dir=${OUT:-bench/results}
mkdir -p "$out_dir"
jobs=$(nproc)

build() {  # build DIR ARCHS
  local dir=$1 archs=$2 t0 rc
  t0=$(date +%s)
  cmake -S . -B "$dir" -DLLM2CLIP_CUDA=on -DLLM2CLIP_CUDA_ARCHS="$archs" -DCMAKE_BUILD_TYPE=Release >"$dir.log" 2>&1 &&
    cmake --build "$dir" -j "$jobs" --target l2c_native_tests llm2clip_c l2c_gpu_bench >>"$dir.log" 2>&1
  rc=$?
  echo "build for sm_$archs: exit $rc in $(($(date +%s) - t0)) s (log: $dir.log)"
  if [ $rc -ne 0 ]; then grep -E "error|Error" "$dir.log" | head -n 30; tail -n 20 "$dir.log"; fi
  python3 bench/gpu/spills.py "$dir.log"
  return $rc
}

if [ $build_only = 1 ]; then
  build build-gpu "80;90a" || exit 1
  ./build-gpu/Release/l2c_gpu_bench --device cpu --quick >build-gpu-smoke.jsonl || { cat build-gpu-smoke.jsonl; exit 1; }
  echo "bench program smoke run on the CPU: $(grep -c '"case"' build-gpu-smoke.jsonl) cases"
  ./build-gpu/Release/l2c_native_tests | tail -n 1
  echo "build-only: OK"
  exit 0
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then echo "no nvidia-smi: not a GPU machine (try --build-only)"; exit 2; fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)
arch=$cc; [ "$cc" = 90 ] && arch=90a
slug=$(echo "$card" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')
report="$out_dir/gpu-$slug.md"
echo "card: $card (sm_$cc, building for $arch)"
{
  echo "# GPU check: $card"
  echo
  echo "Date: $(date -u +%FT%TZ). Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)."
  echo
} >"$report"
build build-gpu "$arch" 2>&1 | tee -a "$report"
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1

echo '## Native tests (CUDA against the CPU kernels)' >>"$report"
echo '```' >>"$report"
timeout "${L2C_TESTS_TIMEOUT:-240}" ./build-gpu/Release/l2c_native_tests 2>&1 | tee build-gpu-tests.log | grep -vE '^(ok|skip) ' | tee -a "$report"
tests_rc=${PIPESTATUS[0]}
echo '```' >>"$report"

echo "timing (ours)..."
timeout "${L2C_BENCH_TIMEOUT:-200}" ./build-gpu/Release/l2c_gpu_bench $quick >build-gpu-ours.jsonl 2>&1
: >build-gpu-torch.jsonl
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo "timing (PyTorch)..."
  timeout "${L2C_TORCH_TIMEOUT:-150}" python3 bench/gpu/torch_ref.py $quick >build-gpu-torch.jsonl 2>&1
else
  echo 'PyTorch with CUDA not found: no side-by-side figures.' | tee -a "$report"
fi
json="$out_dir/gpu-$slug.json"
{
  echo
  echo "## Timings (medians; FLOPs: GEMM 2MNK, attention 4·B·H·S²·D forward and 2.5x backward, InfoNCE 2NMd forward and 6NMd backward)"
  echo
  python3 bench/gpu/summarize.py build-gpu-ours.jsonl build-gpu-torch.jsonl "$json"
} >build-gpu-table.md
cat build-gpu-table.md >>"$report"
for f in build-gpu-tests.log build-gpu-ours.jsonl build-gpu-torch.jsonl; do [ "$out_dir" = bench/results ] || cp "$f" "$out_dir/" 2>/dev/null; done
echo "report: $report, $json"
echo "native tests: $(tail -n 1 build-gpu-tests.log)"
cat build-gpu-table.md
exit $tests_rc
