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

int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(L2C_INVALID_ARGUMENT, "cuda matmul: sizes overflow");
  return r;
}
int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(L2C_INVALID_ARGUMENT, "cuda matmul: sizes overflow");
  return r;
}
// Elements spanned by `rows` rows of `cols` columns with row stride ld (0 if empty).
int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return checked_add(checked_mul(rows - 1, ld), cols);
}

// The same checks as cpu::matmul's: what would otherwise read or write out of bounds.
void validate(const MatmulParams &p) {
  auto bad = [](const std::string &m) { fail(L2C_INVALID_ARGUMENT, "cuda matmul: " + m); };
  if (p.batch < 0 || p.M < 0 || p.N < 0 || p.K < 0) bad("negative size");
  if (p.in_dtype != L2C_FLOAT32 && p.in_dtype != L2C_BFLOAT16 && p.in_dtype != L2C_FLOAT16)
    fail(L2C_DTYPE_MISMATCH, "cuda matmul: input dtype must be float32, bfloat16 or float16");
  if (p.out_dtype != p.in_dtype && p.out_dtype != L2C_FLOAT32)
    fail(L2C_DTYPE_MISMATCH, "cuda matmul: output dtype must be the input dtype or float32");
  if (p.stride_a < 0 || p.stride_b < 0 || p.stride_c < 0) bad("negative batch stride");
  // Rows x columns of A, B, C as stored.
  int64_t ar = p.trans_a ? p.K : p.M, ac = p.trans_a ? p.M : p.K;
  int64_t br = p.trans_b ? p.N : p.K, bc = p.trans_b ? p.K : p.N;
  if (p.lda < ac || p.lda < 1) bad("lda " + std::to_string(p.lda) + " < " + std::to_string(ac));
  if (p.ldb < bc || p.ldb < 1) bad("ldb " + std::to_string(p.ldb) + " < " + std::to_string(bc));
  if (p.ldc < p.N || p.ldc < 1) bad("ldc " + std::to_string(p.ldc) + " < " + std::to_string(p.N));
  // Batch entries of C must not overlap: blocks write them concurrently.
  int64_t c_span = extent(p.M, p.N, p.ldc);
  if (p.batch > 1 && c_span > 0 && p.stride_c < c_span)
    bad("stride_c " + std::to_string(p.stride_c) + " overlaps the previous output matrix");
  // Every offset the kernel forms must be representable.
  if (p.batch > 0) {
    checked_add(checked_mul(p.batch - 1, p.stride_a), extent(ar, ac, p.lda));
    checked_add(checked_mul(p.batch - 1, p.stride_b), extent(br, bc, p.ldb));
    checked_add(checked_mul(p.batch - 1, p.stride_c), c_span);
  }
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;  // nothing is read or written
  if (!p.c) bad("output pointer is null");
  if (p.K > 0 && (!p.a || !p.b)) bad("input pointer is null");
  // The grid's x dimension holds the N tiles (at most 2^31 - 1).
  if ((p.N + kBN - 1) / kBN > 2147483647) bad("N " + std::to_string(p.N) + " is too large");
}

}  // namespace

void matmul(int device, const MatmulParams &p) {
  DeviceGuard guard(device);
  validate(p);
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
