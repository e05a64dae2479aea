// matmul.cu: l2c::cuda::matmul, batched C[b] = op(A[b]) . op(B[b]) with the semantics
// of backend.h's MatmulParams (transposes, leading dimensions, broadcast batch strides,
// float32 / bfloat16 / float16 inputs, float32 accumulation, float32 or input-dtype
// output). The kernels are in gemm.cuh: bfloat16 / float16 inputs with 16-byte aligned
// operands run on tensor cores (mma.sync, cp.async pipeline); float32 inputs and
// misaligned operands on the tiled SIMT kernel. Tested against l2c::cpu::matmul in
// tests/test_cuda_ops.cc.
#include <string>
#include <type_traits>

#include "backend.h"
#include "cuda_common.cuh"
#include "gemm.cuh"

namespace l2c {
namespace cuda {

void matmul(int device, const MatmulParams &p) {
  DeviceGuard guard(device);
  check_matmul_params(p, "cuda matmul");
  // The SIMT grid's x dimension holds the N tiles (at most 2^31 - 1).
  if ((p.N + simt::kBN - 1) / simt::kBN > 2147483647)
    fail(L2C_INVALID_ARGUMENT, "cuda matmul: N " + std::to_string(p.N) + " is too large");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  GemmArgs g{p.a,   p.b,   p.c,   p.batch,    p.M,        p.N,        p.K,  p.lda,
             p.ldb, p.ldc, p.stride_a, p.stride_b, p.stride_c, false};
  cudaStream_t s = stream(device);
  // The one dispatch point: (input dtype, float32 output?, trans_a, trans_b) -> kernel.
  L2C_FLOAT_DTYPE_SWITCH(p.in_dtype, In, [&] {
    L2C_BOOL_SWITCH(p.out_dtype == L2C_FLOAT32, kOutF32, [&] {
      using Out = std::conditional_t<kOutF32, F32, In>;
      L2C_BOOL_SWITCH(p.trans_a, kTransA, [&] {
        L2C_BOOL_SWITCH(p.trans_b, kTransB, [&] {
          launch_gemm<In, Out, kTransA, kTransB>(device, g, NoEpi{}, s);
        });
      });
    });
  });
}

}  // namespace cuda
}  // namespace l2c
