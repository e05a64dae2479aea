// matmul.cu: l2c::cuda::matmul, batched C[b] = op(A[b]) . op(B[b]) with the semantics
// of backend.h's MatmulParams (transposes, leading dimensions, broadcast batch strides,
// float32 / bfloat16 / float16 inputs, float32 accumulation, float32 or input-dtype
// output). Kernel 1: a shared-memory tiled SIMT kernel, correct first; tensor cores come
// later. Built by nvcc; tested against l2c::cpu::matmul in tests/test_cuda.cc.
#include <string>
#include <type_traits>

#include "backend.h"
#include "cuda_common.cuh"

namespace l2c {
namespace cuda {
namespace {

// Kernel 1 tiling: a block of 256 threads (16 x 16) computes a 64 x 64 tile of C; each
// thread owns 4 x 4 outputs at rows ty + 16*i and columns tx + 16*j, so a warp's 32
// threads read 16 consecutive B values (no bank conflicts) and 2 A values (broadcast)
// from shared memory, and store 16 consecutive elements of a row of C. Operands reach
// shared memory already converted to float32, kBK = 16 deep per step.
constexpr int kBM = 64, kBN = 64, kBK = 16;
constexpr int kThreadsX = 16, kThreadsY = 16;
constexpr int kThreads = kThreadsX * kThreadsY;
constexpr int kTM = kBM / kThreadsY, kTN = kBN / kThreadsX;  // 4 x 4 outputs per thread
// Rows of the shared tiles are padded by one float: the transposing loads (A not
// transposed, B transposed) write a column of the tile per warp, which without padding
// would hit one bank 16 times.
constexpr int kPad = 1;
// gridDim.y and gridDim.z are at most 65535: larger M-tile counts and batches loop.
constexpr int64_t kMaxGridYZ = 65535;

static_assert(kBM * kBK % kThreads == 0 && kBN * kBK % kThreads == 0,
              "tile loads must divide evenly over the threads");

// Plain kernel arguments (MatmulParams holds dtypes the kernel gets as template args).
struct GemmArgs {
  const void *a;
  const void *b;
  void *c;
  int64_t batch, M, N, K;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  int64_t m_tiles;
};

// C (batch, M, N) = op(A) (batch, M, K) . op(B) (batch, K, N); grid (N tiles, M tiles,
// batch), the last two capped and looped over. K == 0 leaves the accumulators at zero,
// so C gets zeros; C is only written.
template <typename In, typename Out, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(kThreads) matmul_tiled_kernel(const GemmArgs g) {
  using TIn = typename In::T;
  using TOut = typename Out::T;
  __shared__ float As[kBK][kBM + kPad];  // As[k][m] = op(A)[m0 + m, k0 + k]
  __shared__ float Bs[kBK][kBN + kPad];  // Bs[k][n] = op(B)[k0 + k, n0 + n]

  const int tid = threadIdx.x;
  const int tx = tid % kThreadsX, ty = tid / kThreadsX;
  const int64_t n0 = (int64_t)blockIdx.x * kBN;

  for (int64_t bz = blockIdx.z; bz < g.batch; bz += gridDim.z) {
    const TIn *A = static_cast<const TIn *>(g.a) + bz * g.stride_a;
    const TIn *B = static_cast<const TIn *>(g.b) + bz * g.stride_b;
    TOut *C = static_cast<TOut *>(g.c) + bz * g.stride_c;

    for (int64_t by = blockIdx.y; by < g.m_tiles; by += gridDim.y) {
      const int64_t m0 = by * kBM;
      float acc[kTM][kTN];
#pragma unroll
      for (int i = 0; i < kTM; i++)
#pragma unroll
        for (int j = 0; j < kTN; j++) acc[i][j] = 0.0f;

      for (int64_t k0 = 0; k0 < g.K; k0 += kBK) {
        // Stage op(A)[m0:m0+64, k0:k0+16] and op(B)[k0:k0+16, n0:n0+64], zero outside.
        // Consecutive threads take consecutive addresses of the stored matrix: along K
        // for A [M,K] and B^T [N,K], along M for A^T [K,M], along N for B [K,N].
#pragma unroll
        for (int r = 0; r < kBM * kBK / kThreads; r++) {
          const int l = tid + r * kThreads;
          const int mm = kTransA ? l % kBM : l / kBK;
          const int kk = kTransA ? l / kBM : l % kBK;
          const int64_t m = m0 + mm, k = k0 + kk;
          float v = 0.0f;
          if (m < g.M && k < g.K) v = In::to_f32(kTransA ? A[k * g.lda + m] : A[m * g.lda + k]);
          As[kk][mm] = v;
        }
#pragma unroll
        for (int r = 0; r < kBN * kBK / kThreads; r++) {
          const int l = tid + r * kThreads;
          const int nn = kTransB ? l / kBK : l % kBN;
          const int kk = kTransB ? l % kBK : l / kBN;
          const int64_t n = n0 + nn, k = k0 + kk;
          float v = 0.0f;
          if (n < g.N && k < g.K) v = In::to_f32(kTransB ? B[n * g.ldb + k] : B[k * g.ldb + n]);
          Bs[kk][nn] = v;
        }
        __syncthreads();  // the tiles are complete

#pragma unroll
        for (int kk = 0; kk < kBK; kk++) {
          float a_reg[kTM], b_reg[kTN];
#pragma unroll
          for (int i = 0; i < kTM; i++) a_reg[i] = As[kk][ty + kThreadsY * i];
#pragma unroll
          for (int j = 0; j < kTN; j++) b_reg[j] = Bs[kk][tx + kThreadsX * j];
#pragma unroll
          for (int i = 0; i < kTM; i++)
#pragma unroll
            for (int j = 0; j < kTN; j++) acc[i][j] = fmaf(a_reg[i], b_reg[j], acc[i][j]);
        }
        __syncthreads();  // everyone is done reading before the next step overwrites
      }

#pragma unroll
      for (int i = 0; i < kTM; i++) {
        const int64_t m = m0 + ty + kThreadsY * i;
        if (m >= g.M) continue;
#pragma unroll
        for (int j = 0; j < kTN; j++) {
          const int64_t n = n0 + tx + kThreadsX * j;
          if (n < g.N) C[m * g.ldc + n] = Out::from_f32(acc[i][j]);
        }
      }
    }
  }
}

template <typename In, typename Out, bool kTransA, bool kTransB>
void launch_matmul(const GemmArgs &g, cudaStream_t s) {
  dim3 grid((unsigned)((g.N + kBN - 1) / kBN), (unsigned)std::min(g.m_tiles, kMaxGridYZ),
            (unsigned)std::min(g.batch, kMaxGridYZ));
  matmul_tiled_kernel<In, Out, kTransA, kTransB><<<grid, kThreads, 0, s>>>(g);
  L2C_CUDA_CHECK_LAUNCH("matmul_tiled_kernel");
}


}  // namespace

void matmul(int device, const MatmulParams &p) {
  DeviceGuard guard(device);
  check_matmul_params(p, "cuda matmul");
  // The grid's x dimension holds the N tiles (at most 2^31 - 1).
  if ((p.N + kBN - 1) / kBN > 2147483647)
    fail(L2C_INVALID_ARGUMENT, "cuda matmul: N " + std::to_string(p.N) + " is too large");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  GemmArgs g{p.a,        p.b,        p.c,        p.batch,    p.M,
             p.N,        p.K,        p.lda,      p.ldb,      p.ldc,
             p.stride_a, p.stride_b, p.stride_c, (p.M + kBM - 1) / kBM};
  cudaStream_t s = stream(device);
  // The one dispatch point: (input dtype, float32 output?, trans_a, trans_b) -> kernel.
  L2C_FLOAT_DTYPE_SWITCH(p.in_dtype, In, [&] {
    L2C_BOOL_SWITCH(p.out_dtype == L2C_FLOAT32, kOutF32, [&] {
      using Out = std::conditional_t<kOutF32, F32, In>;
      L2C_BOOL_SWITCH(p.trans_a, kTransA, [&] {
        L2C_BOOL_SWITCH(p.trans_b, kTransB, [&] { launch_matmul<In, Out, kTransA, kTransB>(g, s); });
      });
    });
  });
}

}  // namespace cuda
}  // namespace l2c
