// gemm.cuh: the CUDA GEMM kernels shared by matmul.cu (l2c::cuda::matmul) and lora.cu
// (the LoRA linear layer, whose epilogue adds the bias and the rank-r update):
//
//  * gemm_tc_kernel: tensor cores, bfloat16 / float16 inputs, float32 accumulation.
//    CTA tile 128 x 256 x 64, 8 warps (2 x 4) of 64 x 64 each, mma.sync m16n8k16;
//    operands staged by cp.async (16-byte chunks, zero-filled past K and past a
//    contiguous dimension's end) in a 3-stage ring of XOR-swizzled shared-memory tiles
//    read by ldmatrix(.trans) without bank conflicts; one barrier per 64-deep k-tile.
//    Every transpose combination (K-major or MN-major staging per operand). The index
//    arithmetic lives in gemm_layout.h (also run by a CPU emulation in
//    tests/test_gemm_layout.cc). Needs 16-byte aligned operands (base, leading dims and
//    batch strides multiples of 8 elements, ld < 2^23) and 144 KiB of shared memory per
//    CTA (sm_80 / sm_90 have it); otherwise:
//  * gemm_simt_kernel: the shared-memory tiled float32 SIMT kernel (64 x 64 x 16 tile,
//    4 x 4 outputs per thread), for float32 inputs and the cases above.
//
// Both take an epilogue policy: NoEpi (plain C = A·B) or LoraEpi (C = A·B + bias +
// mask ∘ (S·Eᵀ), see below), and write C rounded once to its dtype.
// Everything here is in an anonymous namespace: each .cu that includes it gets its own
// instantiations (no kernel is shared across translation units).
#pragma once
#include <algorithm>
#include <atomic>
#include <string>
#include <type_traits>

#include <cuda_fp16.h>

#include "backend.h"
#include "cuda_common.cuh"
#include "dropout.h"
#include "gemm_layout.h"

namespace l2c {
namespace cuda {
namespace {

// ---------------------------------------------------------------- arguments

// One (batched) GEMM, dtypes given as template arguments: C[b] = op(A[b])·op(B[b]).
struct GemmArgs {
  const void *a;
  const void *b;
  void *c;
  int64_t batch, M, N, K;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  // C's pairs (m, n), (m, n+1) with n even may be written as one 4- or 8-byte store:
  // C's base is aligned to two elements, ldc and stride_c are even.
  bool c_pairs;
};

struct NoEpi {};

// C[m, n] = A·B[m, n] + bias[n] + mult(m, n) · Σ_j S[m, j] · E(n, j), j < r.
// S is float32 [M, r] (row stride lds); E(n, j) = e[n*e_sn + j*e_sj] of dtype edt
// (float32 / bfloat16 / float16); bias (may be null) has C's input dtype. mult is 1, or
// with mask the dropout multiplier of flat index m*ldm + n (dropout.h's rule: kept
// elements get inv = dropout::scale(p), dropped ones 0). Only for batch == 1.
struct LoraEpi {
  const void *bias = nullptr;
  const float *s = nullptr;
  int64_t lds = 0;
  const void *e = nullptr;
  l2c_dtype edt = L2C_FLOAT32;
  int64_t e_sn = 0, e_sj = 0;
  int64_t r = 0;
  bool mask = false;
  uint64_t seed = 0;
  uint32_t thr = 0;
  float inv = 1.0f;
  int64_t ldm = 0;
};

template <class Epi>
constexpr bool kIsLora = std::is_same<Epi, LoraEpi>::value;

// ---------------------------------------------------------------- small helpers

// 16-bit -> float32 for operand loads: exact for every value (the hardware conversion
// for float16, whose subnormal path in half.h is a loop that costs registers).
template <class In>
__device__ __forceinline__ float in_f32(typename In::T v) {
  if constexpr (std::is_same<In, F16>::value)
    return __half2float(__ushort_as_half(v));
  else
    return In::to_f32(v);
}

// Element i of a float32 / bfloat16 / float16 array whose dtype is known at run time.
__device__ __forceinline__ float load_any(const void *p, l2c_dtype dt, int64_t i) {
  if (dt == L2C_BFLOAT16) return bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
  if (dt == L2C_FLOAT16) return __half2float(__ushort_as_half(static_cast<const uint16_t *>(p)[i]));
  return static_cast<const float *>(p)[i];
}

// Dropout keep bits of the elements f, f+1, f+2, f+3 of a flat index space (bit u set:
// element f+u kept), from the one or two Philox counters they span (dropout.h's rule).
__device__ __forceinline__ unsigned keep_run4(uint64_t seed, uint64_t f, uint32_t thr) {
  const unsigned s = (unsigned)(f & 3);
  const uint64_t c = f >> 2;
  unsigned bits = dropout::keep4(seed, c, thr) >> s;
  if (s) bits |= dropout::keep4(seed, c + 1, thr) << (4 - s);
  return bits & 15u;
}
// The same for two elements f, f+1.
__device__ __forceinline__ unsigned keep_run2(uint64_t seed, uint64_t f, uint32_t thr) {
  const unsigned s = (unsigned)(f & 3);
  const uint64_t c = f >> 2;
  unsigned bits = dropout::keep4(seed, c, thr) >> s;
  if (s == 3) bits |= dropout::keep4(seed, c + 1, thr) << 1;
  return bits & 3u;
}

// The LoRA epilogue of one element, straight from global memory (the SIMT kernel's; the
// tensor-core kernel stages S and E in shared memory instead).
template <class In>
__device__ __forceinline__ float lora_element(const LoraEpi &ep, int64_t m, int64_t n, float v) {
  if (ep.r > 0) {
    float d = 0.0f;
    const float *srow = ep.s + m * ep.lds;
    for (int64_t j = 0; j < ep.r; j++) d = fmaf(srow[j], load_any(ep.e, ep.edt, n * ep.e_sn + j * ep.e_sj), d);
    if (ep.mask) d *= (keep_run2(ep.seed, (uint64_t)(m * ep.ldm + n), ep.thr) & 1u) ? ep.inv : 0.0f;
    v += d;
  }
  if (ep.bias) v += in_f32<In>(static_cast<const typename In::T *>(ep.bias)[n]);
  return v;
}

// gridDim.y and gridDim.z are at most 65535: larger counts loop.
constexpr int64_t kMaxGridYZ = 65535;

// ---------------------------------------------------------------- SIMT kernel

namespace simt {
// A block of 256 threads (16 x 16) computes a 64 x 64 tile of C; each thread owns 4 x 4
// outputs at rows ty + 16*i and columns tx + 16*j, so a warp's 32 threads read 16
// consecutive B values (no bank conflicts) and 2 A values (broadcast) from shared
// memory, and store 16 consecutive elements of a row of C. Operands reach shared memory
// already converted to float32, kBK = 16 deep per step.
constexpr int kBM = 64, kBN = 64, kBK = 16;
constexpr int kThreadsX = 16, kThreadsY = 16;
constexpr int kThreads = kThreadsX * kThreadsY;
constexpr int kTM = kBM / kThreadsY, kTN = kBN / kThreadsX;  // 4 x 4 outputs per thread
// Rows of the shared tiles are padded by one float: the transposing loads (A not
// transposed, B transposed) write a column of the tile per warp, which without padding
// would hit one bank 16 times.
constexpr int kPad = 1;
static_assert(kBM * kBK % kThreads == 0 && kBN * kBK % kThreads == 0,
              "tile loads must divide evenly over the threads");
}  // namespace simt

// C (batch, M, N) = op(A) (batch, M, K) . op(B) (batch, K, N); grid (N tiles, M tiles,
// batch), the last two capped and looped over. K == 0 leaves the accumulators at zero,
// so C gets zeros (plus the epilogue); C is only written.
template <typename In, typename Out, bool kTransA, bool kTransB, class Epi>
__global__ void __launch_bounds__(simt::kThreads, 2) gemm_simt_kernel(const GemmArgs g, const Epi ep) {
  using namespace simt;
  using TIn = typename In::T;
  using TOut = typename Out::T;
  __shared__ float As[kBK][kBM + kPad];  // As[k][m] = op(A)[m0 + m, k0 + k]
  __shared__ float Bs[kBK][kBN + kPad];  // Bs[k][n] = op(B)[k0 + k, n0 + n]

  const int tid = threadIdx.x;
  const int tx = tid % kThreadsX, ty = tid / kThreadsX;
  const int64_t n0 = (int64_t)blockIdx.x * kBN;
  const int64_t m_tiles = (g.M + kBM - 1) / kBM;

  for (int64_t bz = blockIdx.z; bz < g.batch; bz += gridDim.z) {
    const TIn *A = static_cast<const TIn *>(g.a) + bz * g.stride_a;
    const TIn *B = static_cast<const TIn *>(g.b) + bz * g.stride_b;
    TOut *C = static_cast<TOut *>(g.c) + bz * g.stride_c;

    for (int64_t by = blockIdx.y; by < m_tiles; by += gridDim.y) {
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
          if (m < g.M && k < g.K) v = in_f32<In>(kTransA ? A[k * g.lda + m] : A[m * g.lda + k]);
          As[kk][mm] = v;
        }
#pragma unroll
        for (int r = 0; r < kBN * kBK / kThreads; r++) {
          const int l = tid + r * kThreads;
          const int nn = kTransB ? l / kBK : l % kBN;
          const int kk = kTransB ? l % kBK : l / kBN;
          const int64_t n = n0 + nn, k = k0 + kk;
          float v = 0.0f;
          if (n < g.N && k < g.K) v = in_f32<In>(kTransB ? B[n * g.ldb + k] : B[k * g.ldb + n]);
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
          if (n >= g.N) continue;
          float v = acc[i][j];
          if constexpr (kIsLora<Epi>) v = lora_element<In>(ep, m, n, v);
          C[m * g.ldc + n] = Out::from_f32(v);
        }
      }
    }
  }
}

template <typename In, typename Out, bool kTransA, bool kTransB, class Epi>
void launch_gemm_simt(const GemmArgs &g, const Epi &ep, cudaStream_t s) {
  using namespace simt;
  const int64_t m_tiles = (g.M + kBM - 1) / kBM;
  dim3 grid((unsigned)((g.N + kBN - 1) / kBN), (unsigned)std::min(m_tiles, kMaxGridYZ),
            (unsigned)std::min(g.batch, kMaxGridYZ));
  gemm_simt_kernel<In, Out, kTransA, kTransB, Epi><<<grid, kThreads, 0, s>>>(g, ep);
  L2C_CUDA_CHECK_LAUNCH("gemm_simt_kernel");
}

// ---------------------------------------------------------------- tensor-core kernel

namespace tc {
using namespace ::l2c::tcl;  // tile sizes and index arithmetic (gemm_layout.h)
// Epilogue (LoRA): S and E staged as float32 [kRC][kBM] and [kRC][kBN], kRC values of j
// at a time, in the (then idle) pipeline buffers.
constexpr int kRC = 16;
constexpr int kTsLd = kBM + 4, kEsLd = kBN + 4;
static_assert((size_t)kRC * (kTsLd + kEsLd) * 4 <= kSmemBytes, "epilogue staging fits");
static_assert(kEsLd % 2 == 0, "float2 reads of the staged E");
}  // namespace tc

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, asynchronously; only the first `bytes` (0..16) are read,
// the rest of the 16 are zero-filled. Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <bool kTrans>
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}

// d += a·b, m16n8k16, float32 accumulators.
template <class In>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same<In, BF16>::value)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The LoRA epilogue of one CTA tile on the accumulators (before the bias, which is
// added at the store): acc += mult ∘ (S[m0.., :]·E[n0.., :]ᵀ), S and E staged in shared
// memory kRC values of j at a time.
template <class In>
__device__ __forceinline__ void tc_lora_update(const LoraEpi &ep, float (&acc)[tc::kMT][tc::kNT][4], float *fs,
                                               int64_t m0, int64_t n0, int64_t M, int64_t N, int wm, int wn,
                                               int lane, int tid) {
  using namespace tc;
  float *ts = fs;                // ts[j][row]
  float *es = fs + kRC * kTsLd;  // es[j][col]
  for (int64_t j0 = 0; j0 < ep.r; j0 += kRC) {
    __syncthreads();  // the pipeline buffers (or the previous chunk) are no longer read
    for (int i = tid; i < kBM * kRC; i += kThreads) {
      const int row = i / kRC, j = i % kRC;
      const int64_t gm = m0 + row, gj = j0 + j;
      ts[j * kTsLd + row] = gm < M && gj < ep.r ? ep.s[gm * ep.lds + gj] : 0.0f;
    }
    for (int i = tid; i < kBN * kRC; i += kThreads) {
      const int col = i / kRC, j = i % kRC;
      const int64_t gn = n0 + col, gj = j0 + j;
      es[j * kEsLd + col] = gn < N && gj < ep.r ? load_any(ep.e, ep.edt, gn * ep.e_sn + gj * ep.e_sj) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < kMT; mt++) {
      // Accumulators 2h, 2h + 1 of (mt, nt): row rh = acc_row(.., 2h), columns c, c + 1.
      const int r0 = acc_row(wm, mt, lane, 0), r1 = acc_row(wm, mt, lane, 2);
      float part[2][kNT][2];
#pragma unroll
      for (int h = 0; h < 2; h++)
#pragma unroll
        for (int nt = 0; nt < kNT; nt++) part[h][nt][0] = part[h][nt][1] = 0.0f;
#pragma unroll 4
      for (int j = 0; j < kRC; j++) {
        const float s0 = ts[j * kTsLd + r0], s1 = ts[j * kTsLd + r1];
#pragma unroll
        for (int nt = 0; nt < kNT; nt++) {
          const float2 e = *reinterpret_cast<const float2 *>(es + j * kEsLd + acc_col(wn, nt, lane, 0));
          part[0][nt][0] = fmaf(s0, e.x, part[0][nt][0]);
          part[0][nt][1] = fmaf(s0, e.y, part[0][nt][1]);
          part[1][nt][0] = fmaf(s1, e.x, part[1][nt][0]);
          part[1][nt][1] = fmaf(s1, e.y, part[1][nt][1]);
        }
      }
      if (!ep.mask) {
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
          for (int nt = 0; nt < kNT; nt++) {
            acc[mt][nt][2 * h] += part[h][nt][0];
            acc[mt][nt][2 * h + 1] += part[h][nt][1];
          }
      } else {
        // The dropout bits of the 32 elements first, in a rolled loop (one copy of the
        // Philox code, few registers live), then applied with constant indices.
        uint32_t bits = 0;
#pragma unroll 1
        for (int i = 0; i < 2 * kNT; i++) {
          const int h = i / kNT, nt = i % kNT;
          const int64_t gm = m0 + (h ? r1 : r0), gn = n0 + acc_col(wn, nt, lane, 0);
          bits |= keep_run2(ep.seed, (uint64_t)(gm * ep.ldm + gn), ep.thr) << (2 * i);
        }
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
          for (int nt = 0; nt < kNT; nt++) {
            const int i = h * kNT + nt;
            acc[mt][nt][2 * h] += ((bits >> (2 * i)) & 1u ? ep.inv : 0.0f) * part[h][nt][0];
            acc[mt][nt][2 * h + 1] += ((bits >> (2 * i + 1)) & 1u ? ep.inv : 0.0f) * part[h][nt][1];
          }
      }
    }
  }
}

// C = op(A)·op(B) (+ epilogue) on tensor cores; see the file comment. Grid: x = the
// M x N tiles of one matrix (grouped order), y = the batch entry (the host launches at
// most 65535 entries at a time, with the pointers moved on).
template <class In, class Out, bool kTransA, bool kTransB, class Epi>
__global__ void __launch_bounds__(tc::kThreads, 1) gemm_tc_kernel(const GemmArgs g, const Epi ep) {
  using namespace tc;
  using TOut = typename Out::T;
  extern __shared__ uint4 smem_raw[];
  const uint32_t smem0 = smem_addr(smem_raw);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp / kWarpsN) * kWM, wn = (warp % kWarpsN) * kWN;
  int64_t m0, n0;
  tile_origin(blockIdx.x, (g.M + kBM - 1) / kBM, (g.N + kBN - 1) / kBN, m0, n0);
  const int KT = (int)((g.K + kBK - 1) / kBK);
  const int64_t bz = blockIdx.y;

  float acc[kMT][kNT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; mt++)
#pragma unroll
    for (int nt = 0; nt < kNT; nt++)
#pragma unroll
      for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0.0f;

  {
    // Operands of this batch entry; zero-byte copies point at entry 0's first element.
    const uint16_t *A0 = static_cast<const uint16_t *>(g.a), *B0 = static_cast<const uint16_t *>(g.b);
    const uint16_t *A = A0 + bz * g.stride_a, *B = B0 + bz * g.stride_b;
    const TileLoader<kBM, !kTransA> la(g.lda, m0, g.M, tid);
    const TileLoader<kBN, kTransB> lb(g.ldb, n0, g.N, tid);
    auto load_stage = [&](uint32_t stage_addr, int kt) {
      la.load(kt, g.K, [&](uint32_t dst, int64_t src, int bytes) {
        cp_async16(stage_addr + dst, bytes ? A + src : A0, bytes);
      });
      lb.load(kt, g.K, [&](uint32_t dst, int64_t src, int bytes) {
        cp_async16(stage_addr + kAElems * 2 + dst, bytes ? B + src : B0, bytes);
      });
    };

    // Prologue: the first kStages - 1 k-tiles in flight (empty groups past the end keep
    // the group count uniform).
#pragma unroll
    for (int s = 0; s < kStages - 1; s++) {
      if (s < KT) load_stage(smem0 + s * kStageBytes, s);
      cp_async_commit();
    }

    const FragAddr<kTransA, kTransB> fa(lane, wm, wn);
    uint32_t read_addr = smem0, write_addr = smem0 + (kStages - 1) * kStageBytes;
    const uint32_t last_addr = smem0 + (kStages - 1) * kStageBytes;
    for (int kt = 0; kt < KT; kt++) {
      // k-tile kt has landed (this thread's copies; the barrier makes everyone's
      // visible), and everyone is done with the stage read in iteration kt - 1, which
      // the copy issued next overwrites.
      cp_async_wait<kStages - 2>();
      __syncthreads();
      if (kt + kStages - 1 < KT) load_stage(write_addr, kt + kStages - 1);
      cp_async_commit();

      const uint32_t sa = read_addr, sb = read_addr + kAElems * 2;
#pragma unroll
      for (int kk = 0; kk < kBK / 16; kk++) {
        uint32_t af[kMT][4], bfr[kNT][2];
#pragma unroll
        for (int mt = 0; mt < kMT; mt++)
          ldsm_x4<kTransA>(sa + fa.a(kk, mt), af[mt][0], af[mt][1], af[mt][2], af[mt][3]);
#pragma unroll
        for (int np = 0; np < kNT / 2; np++)
          ldsm_x4<!kTransB>(sb + fa.b(kk, np), bfr[2 * np][0], bfr[2 * np][1], bfr[2 * np + 1][0],
                            bfr[2 * np + 1][1]);
#pragma unroll
        for (int mt = 0; mt < kMT; mt++)
#pragma unroll
          for (int nt = 0; nt < kNT; nt++) mma16816<In>(acc[mt][nt], af[mt], bfr[nt]);
      }
      read_addr = read_addr == last_addr ? smem0 : read_addr + kStageBytes;
      write_addr = write_addr == last_addr ? smem0 : write_addr + kStageBytes;
    }
    cp_async_wait<0>();  // only empty groups can be left, but leave nothing in flight
  }

  if constexpr (kIsLora<Epi>)
    tc_lora_update<In>(ep, acc, reinterpret_cast<float *>(smem_raw), m0, n0, g.M, g.N, wm, wn, lane, tid);

  // Store: accumulators 2h, 2h + 1 of tile (mt, nt) are the columns c, c + 1 (c even)
  // of one row (gemm_layout.h's acc_row / acc_col).
  TOut *C = static_cast<TOut *>(g.c) + bz * g.stride_c;
#pragma unroll
  for (int mt = 0; mt < kMT; mt++) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int64_t gm = m0 + acc_row(wm, mt, lane, 2 * h);
      if (gm >= g.M) continue;
      TOut *crow = C + gm * g.ldc;
#pragma unroll
      for (int nt = 0; nt < kNT; nt++) {
        const int64_t gn = n0 + acc_col(wn, nt, lane, 0);
        if (gn >= g.N) continue;
        float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
        const bool two = gn + 1 < g.N;
        if constexpr (kIsLora<Epi>) {
          if (ep.bias) {
            const typename In::T *bias = static_cast<const typename In::T *>(ep.bias);
            v0 += in_f32<In>(bias[gn]);
            if (two) v1 += in_f32<In>(bias[gn + 1]);
          }
        }
        if (two && g.c_pairs) {
          if constexpr (std::is_same<Out, F32>::value) {
            *reinterpret_cast<float2 *>(crow + gn) = make_float2(v0, v1);
          } else {
            const uint32_t lo = Out::from_f32(v0), hi = Out::from_f32(v1);
            *reinterpret_cast<uint32_t *>(crow + gn) = lo | (hi << 16);
          }
        } else {
          crow[gn] = Out::from_f32(v0);
          if (two) crow[gn + 1] = Out::from_f32(v1);
        }
      }
    }
  }
}

// Whether the tensor-core kernel can run this GEMM: 16-byte aligned operands (base, ld
// and batch stride multiples of 8 elements), enough shared memory, a tile count that
// fits gridDim.x. The caller checks the dtypes.
inline bool tc_eligible(int device, const GemmArgs &g) {
  auto al16 = [](const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  if (!al16(g.a) || !al16(g.b)) return false;
  if (g.lda % 8 || g.ldb % 8) return false;
  if (g.lda >= tc::kMaxLd || g.ldb >= tc::kMaxLd) return false;  // TileLoader's 32-bit offsets
  if (g.batch > 1 && (g.stride_a % 8 || g.stride_b % 8)) return false;
  const int64_t tiles = ((g.M + tc::kBM - 1) / tc::kBM) * ((g.N + tc::kBN - 1) / tc::kBN);
  if (tiles > 2147483647) return false;
  int optin = 0;
  L2C_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return (size_t)optin >= tc::kSmemBytes;
}

// Whether C can take the paired stores (see GemmArgs::c_pairs).
inline bool c_pairs_ok(const void *c, size_t elem, int64_t ldc, int64_t stride_c, int64_t batch) {
  return (reinterpret_cast<uintptr_t>(c) % (2 * elem)) == 0 && ldc % 2 == 0 && (batch <= 1 || stride_c % 2 == 0);
}

template <class In, class Out, bool kTransA, bool kTransB, class Epi>
void launch_gemm_tc(int device, const GemmArgs &g, const Epi &ep, cudaStream_t s) {
  using namespace tc;
  auto kernel = gemm_tc_kernel<In, Out, kTransA, kTransB, Epi>;
  // The shared-memory opt-in is per device: set once for each (one bit per device).
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
  if (!bit || !(configured.load(std::memory_order_acquire) & bit)) {
    L2C_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kSmemBytes));
    configured.fetch_or(bit, std::memory_order_acq_rel);
  }
  const int64_t tiles = ((g.M + kBM - 1) / kBM) * ((g.N + kBN - 1) / kBN);
  const size_t in_size = 2, out_size = sizeof(typename Out::T);
  for (int64_t b0 = 0; b0 < g.batch; b0 += kMaxGridYZ) {
    GemmArgs gb = g;
    gb.batch = std::min(g.batch - b0, kMaxGridYZ);
    gb.a = static_cast<const char *>(g.a) + b0 * g.stride_a * in_size;
    gb.b = static_cast<const char *>(g.b) + b0 * g.stride_b * in_size;
    gb.c = static_cast<char *>(g.c) + b0 * g.stride_c * out_size;
    kernel<<<dim3((unsigned)tiles, (unsigned)gb.batch), kThreads, kSmemBytes, s>>>(gb, ep);
    L2C_CUDA_CHECK_LAUNCH("gemm_tc_kernel");
  }
}

// The one entry: tensor cores where they apply (16-bit inputs, aligned operands), else
// the SIMT kernel. g.c_pairs is filled in here. M, N, batch > 0.
template <class In, class Out, bool kTransA, bool kTransB, class Epi>
void launch_gemm(int device, GemmArgs g, const Epi &ep, cudaStream_t s) {
  g.c_pairs = c_pairs_ok(g.c, sizeof(typename Out::T), g.ldc, g.stride_c, g.batch);
  if constexpr (!std::is_same<In, F32>::value) {
    if (tc_eligible(device, g)) {
      launch_gemm_tc<In, Out, kTransA, kTransB, Epi>(device, g, ep, s);
      return;
    }
  }
  launch_gemm_simt<In, Out, kTransA, kTransB, Epi>(g, ep, s);
}

}  // namespace
}  // namespace cuda
}  // namespace l2c
