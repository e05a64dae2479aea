// infonce.cu: the CUDA InfoNCE / CLIP contrastive loss without the N x M logits, forward
// and backward (semantics in l2c_infonce.h, the same as native/cpu/infonce.cc).
//
// Tiles. The logits S = a . b^T are made a tile at a time from shared memory: bfloat16 /
// float16 with tensor cores (mma.sync m16n8k16, float32 accumulation, fragments through
// ldmatrix), float32 with SIMT fmaf (no TF32: the float32 result stays within float32
// rounding of the CPU's). Both paths give every thread the same elements of a tile: warp
// (wm, wn) of the 2 x 4 warps, lane (g = lane / 4, q = lane % 4) holds acc[mi][ni][e] at
//   row wm * 16 MI + 16 mi + g + 8 (e / 2),   column 32 wn + 8 ni + 2 q + e % 2
// (the m16n8 accumulator layout), so the epilogues are shared. Operand tiles are staged
// global -> shared by cp.async (16-byte chunks, zero-filled past the edges) in a 3-stage
// pipeline when d and the pointers allow 16-byte chunks, else by bounds-checked scalar
// loads into the same stages (odd d). Shared rows are padded by 16 bytes (ldmatrix and
// the SIMT reads are free of bank conflicts). Indices into global memory are 64-bit.
//
// Forward (2NMd flops). CTA = (row tile of 128 rows of a, a range of the 128-column tiles
// of b): one pipeline runs through all its (column tile, depth step) pairs; after a
// column tile's last depth step the epilogue
//   - advances each row's online (max, sum) (per thread over its 8 columns of the row;
//     merged over the quad and the 4 column warps once, at the end of the CTA), and
//   - (symmetric) finishes the columns' (max, sum) over the tile's 128 rows (warp
//     shuffles, then the two row warps through shared memory) and writes them to a
//     [row tiles, M] float2 scratch.
// Row partials go to a [column ranges, N] float2 scratch. Row tiles run in waves that
// bound the column scratch (256 MB); after each wave a small kernel folds the wave's
// column partials into running (max float, sum double) column states. Then a combine
// kernel makes lse_rows / lse_cols (double) and per-block loss partials, and a one-block
// kernel sums those in a fixed order: no float atomics, the same bits on every run (on
// one GPU model: the column ranges follow the SM count). L[i,i] comes from a small
// per-row dot-product kernel. Extra memory O(N + M) plus the wave scratch.
//
// Backward (deterministic, no atomics). G = dloss/dL = grad_loss * coef * G' with
//   G'[i,j] = exp(L - lse_row[i]) [+ exp(L - lse_col[j])] - (1 [2]) [i = j]
// (coef = 1/N, symmetric 1/(2N); G' is O(1), so a 16-bit G' does not underflow). One
// kernel, run twice with the roles of a and b swapped, owns whole rows of its output:
// CTA = 64 rows of the owner X (a for da, b for db), looping over the other side Y in
// groups of 512 (float32: 256) rows: it recomputes the S tiles of the group, keeps G' of
// the group in shared memory (the input dtype, for the tensor cores; float32 for float32),
// then out[rows, c0 : c0 + 128] += G'_group . Y[group, c0 : c0 + 128] for each 128-wide
// slice of d (tensor cores again, Y fragments through ldmatrix.trans). Between groups
// the float32 partial rows live in global memory (the output itself for float32, else a
// float32 scratch of the owner's size), read back and written by their owner only; the
// last group writes out = scale * grad_loss * coef * sum in the output dtype. So S is
// made twice (once per side) and no output element has two writers. When a pass has
// fewer than 2 owner CTAs per SM (small N or M), the other side's groups are split into
// ranges (gridDim.y): each range writes float32 partial rows, which a reduce kernel adds
// in a fixed order (the range count follows the SM count, as the forward's column ranges
// do: the same bits on every run of one GPU model). dscale = grad_loss * coef * sum G' S: per-CTA double partials of the
// da pass, summed by one block.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "backend.h"
#include "cuda_common.cuh"
#include "infonce_cuda.h"

namespace l2c {
namespace cuda {
namespace {

constexpr int kThreads = 256;  // 8 warps: 2 (rows) x 4 (columns)
constexpr int kStages = 3;     // cp.async pipeline depth
constexpr int kBN = 128;       // columns per S tile (4 warps x 32)
constexpr int kFwdMI = 4;      // forward: 16-row MMA tiles per warp -> 128 rows per CTA
constexpr int kFwdBM = 32 * kFwdMI;
constexpr int kBwdMI = 2;      // backward: 64 owner rows per CTA
constexpr int kBwdBM = 32 * kBwdMI;
constexpr float kLog2e = 1.4426950408889634f;
// Column scratch of one forward wave (symmetric loss), in bytes.
constexpr int64_t kWaveScratchBytes = int64_t(256) << 20;

// Per storage type: kE elements per 16-byte chunk; kBK the depth of one pipeline stage;
// pitches (elements) of the shared tiles, padded by one chunk.
template <class Tag>
struct Geo {
  using T = typename Tag::T;
  static constexpr bool kMma = sizeof(T) == 2;
  static constexpr int kE = 16 / (int)sizeof(T);         // 8 | 4
  static constexpr int kBK = kMma ? 32 : 16;              // depth per stage
  static constexpr int kPitch = kBK + kE;                 // S operand tiles [rows][kBK]
  static constexpr int kDC = 128;                         // backward: d slice per pass
  static constexpr int kYPitch = kDC + kE;                // Y tiles [kBK][kDC]
  static constexpr int kGroupTiles = kMma ? 4 : 2;        // backward: S tiles per G' group
  static constexpr int kKG = kGroupTiles * kBN;           // 512 | 256 rows of Y per group
  static constexpr int kGPitch = kKG + kE;                // G' tile [64][kKG] (type T)
};

// ---------------------------------------------------------------- device helpers

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// 2^x in one MUFU op (relative error ~2^-22; -inf -> 0, NaN stays NaN). Its arguments are
// (L - max) * log2(e) or (L - lse) * log2(e): at most ~0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// (max, sum) log-sum-exp states: x merged with y. An empty state (-inf, 0) adds nothing;
// a NaN sum stays NaN.
__device__ __forceinline__ float2 merge_ml(float2 x, float2 y) {
  const float m = fmaxf(x.x, y.x);
  const float ref = m == neg_inf() ? 0.0f : m;
  return make_float2(m, x.y * exp2f((x.x - ref) * kLog2e) + y.y * exp2f((y.x - ref) * kLog2e));
}

// l * e^(m - ref) in double; 0 for an empty state, NaN kept.
__device__ __forceinline__ double scaled_sum(float m, double l, double ref) {
  return l == 0.0 ? 0.0 : l * exp((double)m - ref);
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void *smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// c += a . b for one m16n8k16 tile (a: 4 registers of the row-major 16 x 16 A fragment,
// b0 / b1: the column-major 16 x 8 B fragment), float32 accumulation.
template <class Tag>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<Tag, BF16>::value) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same<Tag, F16>::value, "tensor-core tiles are bfloat16 or float16");
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

template <int MI>
__device__ __forceinline__ void zero_acc(float (&acc)[MI][4][4]) {
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int ni = 0; ni < 4; ni++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;
}

// Stages rows [r0, r0 + ROWS) x columns [c0, c0 + COLS) of a row-major matrix with nrows
// rows of ncols elements (row stride ncols) into dst (row pitch PITCH), zeros outside.
// vec: 16-byte cp.async chunks (ncols % kE == 0, 16-byte aligned base, c0 % kE == 0), so
// a chunk is wholly inside or outside; else scalar loads and shared stores (complete at
// the next __syncthreads, as the cp.async groups are at the matching wait + barrier).
template <class Tag, int ROWS, int COLS, int PITCH>
__device__ __forceinline__ void load_tile(typename Tag::T *dst, const typename Tag::T *src, int64_t nrows,
                                          int64_t ncols, int64_t r0, int64_t c0, bool vec) {
  using T = typename Tag::T;
  constexpr int E = Geo<Tag>::kE;
  constexpr int CPR = COLS / E;  // chunks per row
  constexpr int CHUNKS = ROWS * CPR;
  static_assert(COLS % E == 0 && CHUNKS % kThreads == 0, "a tile is whole chunks, evenly spread");
#pragma unroll
  for (int it = 0; it < CHUNKS / kThreads; it++) {
    const int idx = (int)threadIdx.x + it * kThreads;
    const int r = idx / CPR, cc = (idx % CPR) * E;
    const int64_t gr = r0 + r, gc = c0 + cc;
    T *d = dst + r * PITCH + cc;
    if (vec) {
      const bool ok = gr < nrows && gc < ncols;
      cp_async16(d, ok ? src + gr * ncols + gc : src, ok ? 16 : 0);
    } else {
      const bool row_ok = gr < nrows;
#pragma unroll
      for (int e = 0; e < E; e++) d[e] = row_ok && gc + e < ncols ? src[gr * ncols + gc + e] : T(0);
    }
  }
}

// acc += As[rows of this warp][0, kBK) . Bs[columns of this warp][0, kBK)^T: one stage
// of S = X . Y^T. As: [32 MI][kPitch], Bs: [kBN][kPitch], both depth-contiguous.
template <class Tag, int MI>
__device__ __forceinline__ void stage_S(float (&acc)[MI][4][4], const typename Tag::T *As,
                                        const typename Tag::T *Bs, int wm, int wn, int lane) {
  using G = Geo<Tag>;
  if constexpr (G::kMma) {
#pragma unroll
    for (int ks = 0; ks < G::kBK / 16; ks++) {
      uint32_t af[MI][4], bfr[4][2];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
        ldsm_x4(af[mi], As + (wm * MI * 16 + mi * 16 + (lane & 15)) * G::kPitch + ks * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < 2; np++) {
        // matrices: (cols +0..7, k +0..7), (+0..7, +8..15), (+8..15, +0..7), (+8..15, +8..15)
        uint32_t r[4];
        ldsm_x4(r, Bs + (wn * 32 + np * 16 + (lane >> 4) * 8 + (lane & 7)) * G::kPitch + ks * 16 +
                       ((lane >> 3) & 1) * 8);
        bfr[2 * np][0] = r[0];
        bfr[2 * np][1] = r[1];
        bfr[2 * np + 1][0] = r[2];
        bfr[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++) mma16816<Tag>(acc[mi][ni], af[mi], bfr[ni][0], bfr[ni][1]);
    }
  } else {
    const int g = lane >> 2, q = lane & 3;
#pragma unroll 4
    for (int k = 0; k < G::kBK; k++) {
      float av[MI][2], bv[4][2];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) av[mi][h] = As[(wm * MI * 16 + mi * 16 + h * 8 + g) * G::kPitch + k];
#pragma unroll
      for (int ni = 0; ni < 4; ni++)
#pragma unroll
        for (int c = 0; c < 2; c++) bv[ni][c] = Bs[(wn * 32 + ni * 8 + 2 * q + c) * G::kPitch + k];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[mi][ni][e] = fmaf(av[mi][e >> 1], bv[ni][e & 1], acc[mi][ni][e]);
    }
  }
}

// acc += Gs[rows of this warp][kofs, kofs + kBK) . Ys[0, kBK)[columns of this warp]: one
// stage of out = G' . Y. Gs: [32 MI][kGPitch] (depth-contiguous), Ys: [kBK][kYPitch]
// (column-contiguous: rows of Y).
template <class Tag, int MI>
__device__ __forceinline__ void stage_G(float (&acc)[MI][4][4], const typename Tag::T *Gs, int kofs,
                                        const typename Tag::T *Ys, int wm, int wn, int lane) {
  using G = Geo<Tag>;
  if constexpr (G::kMma) {
#pragma unroll
    for (int ks = 0; ks < G::kBK / 16; ks++) {
      uint32_t af[MI][4], bfr[4][2];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
        ldsm_x4(af[mi], Gs + (wm * MI * 16 + mi * 16 + (lane & 15)) * G::kGPitch + kofs + ks * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < 2; np++) {
        // matrices (rows k, columns n): (k +0..7, n +0..7), (+8..15, +0..7), (+0..7, +8..15),
        // (+8..15, +8..15); transposed they are b0 / b1 of column tiles 2 np and 2 np + 1.
        uint32_t r[4];
        ldsm_x4_trans(r, Ys + (ks * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * G::kYPitch + wn * 32 + np * 16 +
                             (lane >> 4) * 8);
        bfr[2 * np][0] = r[0];
        bfr[2 * np][1] = r[1];
        bfr[2 * np + 1][0] = r[2];
        bfr[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++) mma16816<Tag>(acc[mi][ni], af[mi], bfr[ni][0], bfr[ni][1]);
    }
  } else {
    const int g = lane >> 2, q = lane & 3;
#pragma unroll 4
    for (int k = 0; k < G::kBK; k++) {
      float av[MI][2], bv[4][2];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) av[mi][h] = Gs[(wm * MI * 16 + mi * 16 + h * 8 + g) * G::kGPitch + kofs + k];
#pragma unroll
      for (int ni = 0; ni < 4; ni++)
#pragma unroll
        for (int c = 0; c < 2; c++) bv[ni][c] = Ys[k * G::kYPitch + wn * 32 + ni * 8 + 2 * q + c];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[mi][ni][e] = fmaf(av[mi][e >> 1], bv[ni][e & 1], acc[mi][ni][e]);
    }
  }
}

// Sum over the block (256 threads) in a fixed order; the result is valid in thread 0.
// sh: 8 doubles of shared memory. Ends with the block synchronised.
__device__ __forceinline__ double block_sum(double v, double *sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; w++) t += sh[w];
  __syncthreads();
  return t;
}

// ---------------------------------------------------------------- forward

struct FwdArgs {
  const void *a;
  const void *b;
  int64_t N, M, d;
  float scale;
  const float *scale_dev;  // read on the device when not null
  int vec;                 // 16-byte chunks (see load_tile)
  int kt;                  // depth steps per tile: max(1, ceil(d / kBK))
  int64_t ncoltiles;       // ceil(M / kBN)
  int splits;              // column ranges (gridDim.x)
  int64_t rt0;             // first row tile of this wave
  float2 *rowpart;         // [splits][N]: (max, sum) of row i over column range s
  float2 *colpart;         // [row tiles of the wave][M] (symmetric): (max, sum) of column j
};

constexpr size_t fwd_smem_bytes(size_t elem) {
  return kStages * (size_t)(kFwdBM + kBN) * (elem == 2 ? Geo<BF16>::kPitch : Geo<F32>::kPitch) * elem +
         2 * kBN * sizeof(float2) + 4 * kFwdBM * sizeof(float2);
}

// grid (splits, row tiles of the wave), kThreads threads, fwd_smem_bytes dynamic shared.
template <class Tag, bool kSym>
__global__ void __launch_bounds__(kThreads) infonce_fwd_kernel(const FwdArgs p) {
  using G = Geo<Tag>;
  using T = typename Tag::T;
  constexpr int MI = kFwdMI, BM = kFwdBM;
  constexpr int kStageElems = (BM + kBN) * G::kPitch;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T *stages = reinterpret_cast<T *>(smem_raw);
  float2 *colbuf = reinterpret_cast<float2 *>(smem_raw + sizeof(T) * kStages * kStageElems);  // [2][kBN]
  float2 *rowbuf = colbuf + 2 * kBN;                                                          // [4][BM]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3, g = lane >> 2, q = lane & 3;
  const T *A = static_cast<const T *>(p.a);
  const T *B = static_cast<const T *>(p.b);
  const float scale = p.scale_dev ? *p.scale_dev : p.scale;
  const bool vec = p.vec != 0;
  const int64_t rt = p.rt0 + blockIdx.y, i0 = rt * BM;
  const int split = blockIdx.x;
  const int64_t t0 = split * p.ncoltiles / p.splits, t1 = (split + 1) * p.ncoltiles / p.splits;
  const int KT = p.kt;
  const int64_t total = (t1 - t0) * KT;  // >= 1: splits <= ncoltiles

  // Loads run kStages - 1 (tile, depth) steps ahead of the math, across tile boundaries.
  int64_t ld_it = 0, ld_tile = t0;
  int ld_kt = 0, ld_stage = 0;
  auto load_next = [&]() {
    if (ld_it < total) {
      T *st = stages + ld_stage * kStageElems;
      const int64_t k0 = (int64_t)ld_kt * G::kBK;
      load_tile<Tag, BM, G::kBK, G::kPitch>(st, A, p.N, p.d, i0, k0, vec);
      load_tile<Tag, kBN, G::kBK, G::kPitch>(st + BM * G::kPitch, B, p.M, p.d, ld_tile * kBN, k0, vec);
    }
    cp_async_commit();  // possibly empty: keeps the group count uniform
    ld_it++;
    if (++ld_kt == KT) {
      ld_kt = 0;
      ld_tile++;
    }
    ld_stage = ld_stage + 1 == kStages ? 0 : ld_stage + 1;
  };

  float acc[MI][4][4];
  zero_acc(acc);
  float rowM[MI][2], rowL[MI][2];  // this thread's share of its rows' online (max, sum)
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      rowM[mi][h] = neg_inf();
      rowL[mi][h] = 0.0f;
    }
  const int64_t rows_left = p.N - i0;  // rows r < rows_left of the tile exist

#pragma unroll 1
  for (int s = 0; s < kStages - 1; s++) load_next();
  int64_t tile = t0;
  int kt = 0, stage = 0;
#pragma unroll 1
  for (int64_t it = 0; it < total; it++) {
    cp_async_wait<kStages - 2>();  // this step's group has landed (own copies)...
    __syncthreads();               // ...and everyone's; the stage refilled next is free
    load_next();
    const T *st = stages + stage * kStageElems;
    stage_S<Tag, MI>(acc, st, st + BM * G::kPitch, wm, wn, lane);
    stage = stage + 1 == kStages ? 0 : stage + 1;
    if (++kt < KT) continue;
    kt = 0;

    // ---- epilogue of column tile `tile`: L = scale * S, columns past M -> -inf ----
    const int64_t j0 = tile * kBN;
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int ni = 0; ni < 4; ni++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int64_t j = j0 + wn * 32 + ni * 8 + 2 * q + (e & 1);
          acc[mi][ni][e] = j < p.M ? acc[mi][ni][e] * scale : neg_inf();
        }
    // Rows: online (max, sum) over this thread's 8 columns of each of its 8 rows.
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        float mt = neg_inf();
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
          for (int c = 0; c < 2; c++) mt = fmaxf(mt, acc[mi][ni][2 * h + c]);
        const float mnew = fmaxf(rowM[mi][h], mt);
        const float ref = mnew == neg_inf() ? 0.0f : mnew;
        float sum = 0.0f;
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
          for (int c = 0; c < 2; c++) sum += fast_exp2((acc[mi][ni][2 * h + c] - ref) * kLog2e);
        rowL[mi][h] = rowL[mi][h] * exp2f((rowM[mi][h] - ref) * kLog2e) + sum;
        rowM[mi][h] = mnew;
      }
    if constexpr (kSym) {
      // Columns: (max, sum) over the tile's rows that exist: per warp (its 64 rows) by
      // shuffles over g, then the two row warps merged through shared memory.
#pragma unroll
      for (int ni = 0; ni < 4; ni++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
          float cm = neg_inf();
#pragma unroll
          for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++)
              if (wm * MI * 16 + mi * 16 + h * 8 + g < rows_left) cm = fmaxf(cm, acc[mi][ni][2 * h + c]);
#pragma unroll
          for (int o = 4; o < 32; o <<= 1) cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
          const float ref = cm == neg_inf() ? 0.0f : cm;
          float cs = 0.0f;
#pragma unroll
          for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++)
              if (wm * MI * 16 + mi * 16 + h * 8 + g < rows_left)
                cs += fast_exp2((acc[mi][ni][2 * h + c] - ref) * kLog2e);
#pragma unroll
          for (int o = 4; o < 32; o <<= 1) cs += __shfl_xor_sync(0xffffffffu, cs, o);
          if (g == 0) colbuf[wm * kBN + wn * 32 + ni * 8 + 2 * q + c] = make_float2(cm, cs);
        }
      // colbuf is rewritten only after the next step's top barrier, which every thread
      // reaches after its reads below.
      __syncthreads();
      if (tid < kBN) {
        const int64_t j = j0 + tid;
        if (j < p.M) p.colpart[(rt - p.rt0) * p.M + j] = merge_ml(colbuf[tid], colbuf[kBN + tid]);
      }
    }
    zero_acc(acc);
    tile++;
  }
  cp_async_wait<0>();  // only empty groups can be left; leave nothing in flight

  // Rows: merge over the quad (lanes q), then over the 4 column warps.
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      float2 v = make_float2(rowM[mi][h], rowL[mi][h]);
#pragma unroll
      for (int o = 1; o < 4; o <<= 1) {
        float2 w = make_float2(__shfl_xor_sync(0xffffffffu, v.x, o), __shfl_xor_sync(0xffffffffu, v.y, o));
        v = merge_ml(v, w);
      }
      if (q == 0) rowbuf[wn * BM + wm * MI * 16 + mi * 16 + h * 8 + g] = v;
    }
  __syncthreads();
  if (tid < BM && tid < rows_left) {
    float2 v = rowbuf[tid];
#pragma unroll
    for (int w = 1; w < 4; w++) v = merge_ml(v, rowbuf[w * BM + tid]);
    p.rowpart[(int64_t)split * p.N + i0 + tid] = v;
  }
}

// diag[i] = scale * (a_i . b_i): one warp per row; float32 accumulation.
template <class Tag>
__global__ void __launch_bounds__(kThreads)
    infonce_diag_kernel(const void *a, const void *b, int64_t N, int64_t d, float scale_val,
                        const float *scale_dev, float *diag) {
  using T = typename Tag::T;
  const int64_t i = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (i >= N) return;  // whole warps
  const T *ai = static_cast<const T *>(a) + i * d;
  const T *bi = static_cast<const T *>(b) + i * d;
  float s = 0.0f;
  for (int64_t k = lane; k < d; k += 32) s = fmaf(Tag::to_f32(ai[k]), Tag::to_f32(bi[k]), s);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) diag[i] = s * (scale_dev ? *scale_dev : scale_val);
}

// The wave's column partials (R rows of colpart) folded into the running column states
// (first wave: replacing them). One thread per column.
__global__ void __launch_bounds__(kThreads)
    infonce_colmerge_kernel(const float2 *colpart, int R, int64_t M, float *colM, double *colL, int first) {
  for (int64_t j = (int64_t)blockIdx.x * kThreads + threadIdx.x; j < M; j += (int64_t)gridDim.x * kThreads) {
    const float m0 = first ? neg_inf() : colM[j];
    const double l0 = first ? 0.0 : colL[j];
    float mx = m0;
    for (int r = 0; r < R; r++) mx = fmaxf(mx, colpart[r * M + j].x);
    const double ref = mx == neg_inf() ? 0.0 : (double)mx;
    double l = scaled_sum(m0, l0, ref);
    for (int r = 0; r < R; r++) {
      const float2 v = colpart[r * M + j];
      l += scaled_sum(v.x, (double)v.y, ref);
    }
    colM[j] = mx;
    colL[j] = l;
  }
}

// lse_rows (and lse_cols) from the partial states, and per-block sums of the loss terms
// lse_rows[i] - L[i,i] (+ lse_cols[i] - L[i,i]) in double.
__global__ void __launch_bounds__(kThreads)
    infonce_finalize_kernel(const float2 *rowpart, int splits, int64_t N, const float *colM, const double *colL,
                            const float *diag, float *lse_rows, float *lse_cols, double *blockpart) {
  __shared__ double sh[kThreads / 32];
  const int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  double term = 0.0;
  if (i < N) {
    float mx = neg_inf();
    for (int s = 0; s < splits; s++) mx = fmaxf(mx, rowpart[s * N + i].x);
    const double ref = mx == neg_inf() ? 0.0 : (double)mx;
    double l = 0.0;
    for (int s = 0; s < splits; s++) {
      const float2 v = rowpart[s * N + i];
      l += scaled_sum(v.x, (double)v.y, ref);
    }
    const double lse = (double)mx + log(l);
    lse_rows[i] = (float)lse;
    term = lse - (double)diag[i];
    if (colM) {  // symmetric: M = N
      const double lc = (double)colM[i] + log(colL[i]);
      lse_cols[i] = (float)lc;
      term += lc - (double)diag[i];
    }
  }
  const double t = block_sum(term, sh);
  if (threadIdx.x == 0) blockpart[blockIdx.x] = t;
}

// loss = sum(blockpart) / denom, in a fixed order. One block.
__global__ void __launch_bounds__(kThreads)
    infonce_loss_kernel(const double *blockpart, int64_t nblocks, double denom, float *loss) {
  __shared__ double sh[kThreads / 32];
  double v = 0.0;
  for (int64_t k = threadIdx.x; k < nblocks; k += kThreads) v += blockpart[k];
  const double t = block_sum(v, sh);
  if (threadIdx.x == 0) *loss = (float)(t / denom);
}

// ---------------------------------------------------------------- backward

struct BwdArgs {
  const void *x;  // owner rows [nx, d] (a for da, b for db)
  const void *y;  // the other side [ny, d]
  int64_t nx, ny, d;
  const float *lse_x;  // log-sum-exp indexed by the owner row (null: no such term)
  const float *lse_y;  // ... by the other side's row
  float diagk;         // the positive's term: 1, symmetric 2
  float scale;
  const float *scale_dev;
  float grad_loss;
  const float *grad_loss_dev;
  double coef;    // 1/N, symmetric 1/(2N)
  int vec;
  int ranges;     // gridDim.y: the other side's groups split into this many ranges
  void *out;      // [nx, d], the inputs' dtype (ranges == 1)
  float *accum;   // ranges == 1: [nx, d] float32 sums between groups (the output itself for
                  // float32); ranges > 1: [ranges][nx, d] float32 partial sums, unscaled
  double *dpart;  // [gridDim.y][gridDim.x] sums of G' * S (null: not wanted)
};

template <class Tag>
constexpr size_t bwd_smem_bytes() {
  using G = Geo<Tag>;
  constexpr size_t s_stage = (size_t)(kBwdBM + kBN) * G::kPitch, y_stage = (size_t)G::kBK * G::kYPitch;
  return sizeof(typename Tag::T) * (kStages * (s_stage > y_stage ? s_stage : y_stage) + (size_t)kBwdBM * G::kGPitch);
}

// S tile (64 owner rows x0.., 128 rows y0.. of the other side) into acc: a standalone
// pipeline over the depth; returns with the stages free (all copies landed, block synced).
template <class Tag, int MI>
__device__ __forceinline__ void mainloop_S(float (&acc)[MI][4][4], typename Tag::T *stages, int stage_elems,
                                           const typename Tag::T *X, int64_t nx, int64_t x0,
                                           const typename Tag::T *Y, int64_t ny, int64_t y0, int64_t d, int KT,
                                           bool vec, int wm, int wn, int lane) {
  using G = Geo<Tag>;
  constexpr int BM = 32 * MI;
#pragma unroll 1
  for (int s = 0; s < kStages - 1; s++) {
    if (s < KT) {
      typename Tag::T *st = stages + s * stage_elems;
      load_tile<Tag, BM, G::kBK, G::kPitch>(st, X, nx, d, x0, (int64_t)s * G::kBK, vec);
      load_tile<Tag, kBN, G::kBK, G::kPitch>(st + BM * G::kPitch, Y, ny, d, y0, (int64_t)s * G::kBK, vec);
    }
    cp_async_commit();
  }
#pragma unroll 1
  for (int kt = 0; kt < KT; kt++) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int nk = kt + kStages - 1;
    if (nk < KT) {
      typename Tag::T *st = stages + (nk % kStages) * stage_elems;
      load_tile<Tag, BM, G::kBK, G::kPitch>(st, X, nx, d, x0, (int64_t)nk * G::kBK, vec);
      load_tile<Tag, kBN, G::kBK, G::kPitch>(st + BM * G::kPitch, Y, ny, d, y0, (int64_t)nk * G::kBK, vec);
    }
    cp_async_commit();
    const typename Tag::T *st = stages + (kt % kStages) * stage_elems;
    stage_S<Tag, MI>(acc, st, st + BM * G::kPitch, wm, wn, lane);
  }
  cp_async_wait<0>();
  __syncthreads();
}

// acc += Gs[:, 0 : KT * kBK) . Y[yb + (0 : KT * kBK), c0 : c0 + kDC) (rows / columns past
// Y's edges are zeros); returns with the stages free.
template <class Tag, int MI>
__device__ __forceinline__ void mainloop_G(float (&acc)[MI][4][4], typename Tag::T *stages, int stage_elems,
                                           const typename Tag::T *Gs, const typename Tag::T *Y, int64_t ny,
                                           int64_t yb, int64_t d, int64_t c0, int KT, bool vec, int wm, int wn,
                                           int lane) {
  using G = Geo<Tag>;
#pragma unroll 1
  for (int s = 0; s < kStages - 1; s++) {
    if (s < KT)
      load_tile<Tag, G::kBK, G::kDC, G::kYPitch>(stages + s * stage_elems, Y, ny, d, yb + (int64_t)s * G::kBK, c0,
                                                 vec);
    cp_async_commit();
  }
#pragma unroll 1
  for (int kt = 0; kt < KT; kt++) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int nk = kt + kStages - 1;
    if (nk < KT)
      load_tile<Tag, G::kBK, G::kDC, G::kYPitch>(stages + (nk % kStages) * stage_elems, Y, ny, d,
                                                 yb + (int64_t)nk * G::kBK, c0, vec);
    cp_async_commit();
    stage_G<Tag, MI>(acc, Gs, kt * G::kBK, stages + (kt % kStages) * stage_elems, wm, wn, lane);
  }
  cp_async_wait<0>();
  __syncthreads();
}

// grid (ceil(nx / 64), ranges), kThreads threads, bwd_smem_bytes<Tag>() dynamic shared.
// Block (x, r) takes range r of the other side's groups.
template <class Tag>
__global__ void __launch_bounds__(kThreads) infonce_bwd_kernel(const BwdArgs p) {
  using G = Geo<Tag>;
  using T = typename Tag::T;
  constexpr int MI = kBwdMI, BM = kBwdBM;
  constexpr int kSStage = (BM + kBN) * G::kPitch, kYStage = G::kBK * G::kYPitch;
  constexpr int kStageElems = kSStage > kYStage ? kSStage : kYStage;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T *stages = reinterpret_cast<T *>(smem_raw);
  T *Gs = stages + kStages * kStageElems;  // [BM][kGPitch]: G' of the current group
  __shared__ double red[kThreads / 32];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3, g = lane >> 2, q = lane & 3;
  const T *X = static_cast<const T *>(p.x);
  const T *Y = static_cast<const T *>(p.y);
  const bool vec = p.vec != 0;
  const float scale = p.scale_dev ? *p.scale_dev : p.scale;
  const float gl = p.grad_loss_dev ? *p.grad_loss_dev : p.grad_loss;
  const float factor = (float)((double)scale * (double)gl * p.coef);
  const int64_t x0 = (int64_t)blockIdx.x * BM;
  const int KT = p.d > 0 ? (int)((p.d + G::kBK - 1) / G::kBK) : 1;
  const int64_t ngroups = (p.ny + G::kKG - 1) / G::kKG;
  const int64_t g_begin = blockIdx.y * ngroups / p.ranges, g_end = (blockIdx.y + 1) * ngroups / p.ranges;
  const bool direct = p.ranges == 1;  // else partial sums into accum's slice blockIdx.y
  float *accum = direct ? p.accum : p.accum + (int64_t)blockIdx.y * p.nx * p.d;

  float lx[MI][2];  // lse_x of this thread's rows
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int64_t xi = x0 + wm * MI * 16 + mi * 16 + h * 8 + g;
      lx[mi][h] = p.lse_x && xi < p.nx ? p.lse_x[xi] : 0.0f;
    }
  double dsum = 0.0;

#pragma unroll 1
  for (int64_t grp = g_begin; grp < g_end; grp++) {
    const int64_t yb = grp * G::kKG;
    // ---- G' of the group's S tiles into Gs ----
#pragma unroll 1
    for (int sub = 0; sub < G::kGroupTiles; sub++) {
      const int64_t y0 = yb + sub * kBN;
      if (y0 >= p.ny) {  // past the end (last group): zeros
        for (int k = tid; k < BM * kBN; k += kThreads) Gs[(k / kBN) * G::kGPitch + sub * kBN + k % kBN] = T(0);
        continue;
      }
      float acc[MI][4][4];
      zero_acc(acc);
      mainloop_S<Tag, MI>(acc, stages, kStageElems, X, p.nx, x0, Y, p.ny, y0, p.d, KT, vec, wm, wn, lane);
      float ly[4][2];
#pragma unroll
      for (int ni = 0; ni < 4; ni++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
          const int64_t yj = y0 + wn * 32 + ni * 8 + 2 * q + c;
          ly[ni][c] = p.lse_y && yj < p.ny ? p.lse_y[yj] : 0.0f;
        }
      float part = 0.0f;
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int rl = wm * MI * 16 + mi * 16 + h * 8 + g;
          const int64_t xi = x0 + rl;
#pragma unroll
          for (int ni = 0; ni < 4; ni++) {
            const int cl = wn * 32 + ni * 8 + 2 * q;
            float gv[2];
#pragma unroll
            for (int c = 0; c < 2; c++) {
              const int64_t yj = y0 + cl + c;
              const float s = acc[mi][ni][2 * h + c], L = s * scale;
              float pr = 0.0f;
              if (p.lse_x) pr += fast_exp2((L - lx[mi][h]) * kLog2e);
              if (p.lse_y) pr += fast_exp2((L - ly[ni][c]) * kLog2e);
              if (xi == yj) pr -= p.diagk;
              gv[c] = xi < p.nx && yj < p.ny ? pr : 0.0f;
              part = fmaf(gv[c], s, part);
            }
            T *dst = Gs + rl * G::kGPitch + sub * kBN + cl;
            if constexpr (G::kMma) {
              *reinterpret_cast<uint32_t *>(dst) =
                  (uint32_t)Tag::from_f32(gv[0]) | ((uint32_t)Tag::from_f32(gv[1]) << 16);
            } else {
              *reinterpret_cast<float2 *>(dst) = make_float2(gv[0], gv[1]);
            }
          }
        }
      dsum += (double)part;
    }
    __syncthreads();  // Gs complete

    // ---- out[rows] (+)= G' . Y[group] per d slice ----
    const int64_t kvalid = p.ny - yb < G::kKG ? p.ny - yb : G::kKG;
    const int KT2 = (int)((kvalid + G::kBK - 1) / G::kBK);
    const bool first = grp == g_begin, last = grp == g_end - 1;
#pragma unroll 1
    for (int64_t c0 = 0; c0 < p.d; c0 += G::kDC) {
      float acc[MI][4][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int64_t xi = x0 + wm * MI * 16 + mi * 16 + g + 8 * (e >> 1);
            const int64_t col = c0 + wn * 32 + ni * 8 + 2 * q + (e & 1);
            acc[mi][ni][e] = !first && xi < p.nx && col < p.d ? accum[xi * p.d + col] : 0.0f;
          }
      mainloop_G<Tag, MI>(acc, stages, kStageElems, Gs, Y, p.ny, yb, p.d, c0, KT2, vec, wm, wn, lane);
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int64_t xi = x0 + wm * MI * 16 + mi * 16 + g + 8 * (e >> 1);
            const int64_t col = c0 + wn * 32 + ni * 8 + 2 * q + (e & 1);
            if (xi < p.nx && col < p.d) {
              if (last && direct)
                static_cast<T *>(p.out)[xi * p.d + col] = Tag::from_f32(acc[mi][ni][e] * factor);
              else
                accum[xi * p.d + col] = acc[mi][ni][e];
            }
          }
    }
    // Gs is rewritten by the next group only after mainloop_G's closing barrier.
  }

  if (p.dpart) {
    const double t = block_sum(dsum, red);
    if (tid == 0) p.dpart[(int64_t)blockIdx.y * gridDim.x + blockIdx.x] = t;
  }
}

// dscale = grad_loss * coef * sum(dpart), in a fixed order. One block.
__global__ void __launch_bounds__(kThreads)
    infonce_dscale_kernel(const double *dpart, int64_t n, double coef, float grad_loss, const float *grad_loss_dev,
                          float *dscale) {
  __shared__ double sh[kThreads / 32];
  double v = 0.0;
  for (int64_t k = threadIdx.x; k < n; k += kThreads) v += dpart[k];
  const double t = block_sum(v, sh);
  if (threadIdx.x == 0) {
    const double gl = grad_loss_dev ? (double)*grad_loss_dev : (double)grad_loss;
    *dscale = (float)(gl * coef * t);
  }
}

// out = scale * grad_loss * coef * sum_r part[r] (fixed order), in out's dtype: the
// backward's ranges combined. Grid-stride over the n = nx * d elements.
template <class Tag>
__global__ void __launch_bounds__(kThreads)
    infonce_bwd_reduce_kernel(const float *part, int ranges, int64_t n, float scale_val, const float *scale_dev,
                              float grad_loss, const float *grad_loss_dev, double coef, void *out) {
  const float scale = scale_dev ? *scale_dev : scale_val;
  const float gl = grad_loss_dev ? *grad_loss_dev : grad_loss;
  const float factor = (float)((double)scale * (double)gl * coef);
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    float v = part[i];
    for (int r = 1; r < ranges; r++) v += part[r * n + i];
    static_cast<typename Tag::T *>(out)[i] = Tag::from_f32(v * factor);
  }
}

// ---------------------------------------------------------------- host side

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Positive integer from the environment (a test / tuning knob), else 0.
int64_t env_int(const char *name) {
  const char *s = std::getenv(name);
  if (!s) return 0;
  long long v = std::atoll(s);
  return v > 0 ? (int64_t)v : 0;
}

int sm_count(int device) {
  int n = 0;
  L2C_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  return n > 0 ? n : 1;
}

// One scratch allocation from the caching allocator, carved into 256-byte aligned parts;
// freed (stream-ordered) when the call ends, also on an exception.
class Scratch {
 public:
  Scratch(int device) : device_(device) {}
  ~Scratch() {
    if (base_) {
      try {
        cuda::free(device_, base_);
      } catch (...) {
      }
    }
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  // Reserves bytes; returns the offset. Call before allocate().
  size_t reserve(size_t bytes) {
    size_t off = size_;
    size_ += (bytes + 255) / 256 * 256;
    return off;
  }
  void allocate() {
    if (size_ > 0) base_ = static_cast<char *>(cuda::alloc(device_, size_));
  }
  template <class P>
  P *at(size_t off) const {
    return reinterpret_cast<P *>(base_ + off);
  }

 private:
  int device_;
  char *base_ = nullptr;
  size_t size_ = 0;
};

bool aligned16(const void *ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

template <class Tag>
void forward_impl(int device, const InfonceParams &p, cudaStream_t s) {
  using G = Geo<Tag>;
  const int64_t N = p.N, M = p.M, d = p.d;
  const bool sym = p.symmetric;
  const bool vec = d > 0 && d % G::kE == 0 && aligned16(p.a) && aligned16(p.b);
  const int64_t nrowtiles = ceil_div(N, kFwdBM), ncoltiles = ceil_div(M, kBN);
  // Row tiles per wave: the column scratch of a wave within kWaveScratchBytes (symmetric),
  // gridDim.y <= 65535; LLM2CLIP_INFONCE_WAVE_ROWS caps it (tests cross waves with it).
  int64_t R = std::min<int64_t>(nrowtiles, 65535);
  if (sym) R = std::min<int64_t>(R, std::max<int64_t>(1, kWaveScratchBytes / (M * (int64_t)sizeof(float2))));
  if (int64_t cap = env_int("LLM2CLIP_INFONCE_WAVE_ROWS")) R = std::min(R, std::max<int64_t>(1, cap / kFwdBM));
  // Column ranges: ~4 CTAs per SM over a wave, but at least 4 column tiles per CTA where
  // M allows (the per-CTA row merge is then a small share); LLM2CLIP_INFONCE_CUDA_SPLITS
  // sets it (tests use it to put many tiles in one CTA).
  int64_t splits = ceil_div(4 * (int64_t)sm_count(device), R);
  splits = std::min(splits, ceil_div(ncoltiles, 4));
  if (int64_t v = env_int("LLM2CLIP_INFONCE_CUDA_SPLITS")) splits = v;
  splits = std::max<int64_t>(1, std::min(splits, std::min<int64_t>(ncoltiles, 65535)));
  const int kt = d > 0 ? (int)ceil_div(d, G::kBK) : 1;
  const int64_t nfin = ceil_div(N, kThreads);

  Scratch scr(device);
  const size_t o_row = scr.reserve(sizeof(float2) * (size_t)(splits * N));
  const size_t o_col = sym ? scr.reserve(sizeof(float2) * (size_t)(R * M)) : 0;
  const size_t o_colM = sym ? scr.reserve(sizeof(float) * (size_t)M) : 0;
  const size_t o_colL = sym ? scr.reserve(sizeof(double) * (size_t)M) : 0;
  const size_t o_diag = scr.reserve(sizeof(float) * (size_t)N);
  const size_t o_blk = scr.reserve(sizeof(double) * (size_t)nfin);
  scr.allocate();
  float2 *rowpart = scr.at<float2>(o_row);
  float2 *colpart = sym ? scr.at<float2>(o_col) : nullptr;
  float *colM = sym ? scr.at<float>(o_colM) : nullptr;
  double *colL = sym ? scr.at<double>(o_colL) : nullptr;
  float *diag = scr.at<float>(o_diag);
  double *blockpart = scr.at<double>(o_blk);

  infonce_diag_kernel<Tag><<<(unsigned)ceil_div(N, kThreads / 32), kThreads, 0, s>>>(p.a, p.b, N, d, p.scale,
                                                                                     p.scale_dev, diag);
  L2C_CUDA_CHECK_LAUNCH("infonce_diag_kernel");

  const size_t smem = fwd_smem_bytes(sizeof(typename Tag::T));
  FwdArgs fa{p.a, p.b, N, M, d, p.scale, p.scale_dev, vec ? 1 : 0, kt, ncoltiles, (int)splits, 0, rowpart, colpart};
  L2C_BOOL_SWITCH(sym, kSym, [&] {
    auto kernel = infonce_fwd_kernel<Tag, kSym>;
    L2C_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    for (int64_t rt0 = 0; rt0 < nrowtiles; rt0 += R) {
      const int64_t rw = std::min(R, nrowtiles - rt0);
      fa.rt0 = rt0;
      kernel<<<dim3((unsigned)splits, (unsigned)rw), kThreads, smem, s>>>(fa);
      L2C_CUDA_CHECK_LAUNCH("infonce_fwd_kernel");
      if (kSym) {
        infonce_colmerge_kernel<<<grid_stride_blocks(M), kThreads, 0, s>>>(colpart, (int)rw, M, colM, colL,
                                                                            rt0 == 0 ? 1 : 0);
        L2C_CUDA_CHECK_LAUNCH("infonce_colmerge_kernel");
      }
    }
  });
  infonce_finalize_kernel<<<(unsigned)nfin, kThreads, 0, s>>>(rowpart, (int)splits, N, colM, colL, diag,
                                                               p.lse_rows, p.lse_cols, blockpart);
  L2C_CUDA_CHECK_LAUNCH("infonce_finalize_kernel");
  infonce_loss_kernel<<<1, kThreads, 0, s>>>(blockpart, nfin, (sym ? 2.0 : 1.0) * (double)N, p.loss);
  L2C_CUDA_CHECK_LAUNCH("infonce_loss_kernel");
}

template <class Tag>
void backward_impl(const InfonceParams &p, int device, cudaStream_t s) {
  using G = Geo<Tag>;
  const int64_t N = p.N, M = p.M, d = p.d;
  const bool sym = p.symmetric;
  const bool f32 = std::is_same<Tag, F32>::value;
  const bool vec = d % G::kE == 0 && aligned16(p.a) && aligned16(p.b);
  const double coef = 1.0 / ((sym ? 2.0 : 1.0) * (double)N);
  const int64_t nblk_a = ceil_div(N, kBwdBM), nblk_b = ceil_div(M, kBwdBM);  // owner row tiles
  const int64_t ngrp_a = ceil_div(M, G::kKG), ngrp_b = ceil_div(N, G::kKG);   // the other side's groups
  // Ranges: a pass with fewer than 2 CTAs per SM splits the other side's groups into
  // ranges (gridDim.y), each writing float32 partial sums that a reduce kernel adds in a
  // fixed order. LLM2CLIP_INFONCE_CUDA_BWD_RANGES sets the count (tests).
  const int64_t target = 2 * (int64_t)sm_count(device);
  auto ranges_for = [&](int64_t nblk, int64_t ngrp) {
    int64_t r = nblk >= target ? 1 : ceil_div(target, nblk);
    if (int64_t v = env_int("LLM2CLIP_INFONCE_CUDA_BWD_RANGES")) r = v;
    return std::max<int64_t>(1, std::min(std::min(r, ngrp), (int64_t)65535));
  };
  const int64_t ra = ranges_for(nblk_a, ngrp_a), rb = ranges_for(nblk_b, ngrp_b);
  // The float32 buffer: [ranges][rows, d] partials when ranges > 1, else (16-bit output
  // and more than one group) [rows, d] sums between groups; float32 outputs accumulate in
  // place. One buffer serves both passes (they run one after the other).
  auto acc_elems = [&](int64_t rows, int64_t r, int64_t ngrp) -> int64_t {
    if (r > 1) return r * rows * d;
    return !f32 && ngrp > 1 ? rows * d : 0;
  };
  const int64_t acc_n = std::max(acc_elems(N, ra, ngrp_a), acc_elems(M, rb, ngrp_b));
  Scratch scr(device);
  const size_t o_acc = scr.reserve(sizeof(float) * (size_t)acc_n);
  const size_t o_dp = scr.reserve(sizeof(double) * (size_t)(nblk_a * ra));
  scr.allocate();
  float *accum = acc_n > 0 ? scr.at<float>(o_acc) : nullptr;
  double *dpart = scr.at<double>(o_dp);

  auto kernel = infonce_bwd_kernel<Tag>;
  const size_t smem = bwd_smem_bytes<Tag>();
  L2C_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  BwdArgs ba{};
  ba.d = d;
  ba.diagk = sym ? 2.0f : 1.0f;
  ba.scale = p.scale;
  ba.scale_dev = p.scale_dev;
  ba.grad_loss = p.grad_loss;
  ba.grad_loss_dev = p.grad_loss_dev;
  ba.coef = coef;
  ba.vec = vec ? 1 : 0;
  auto pass = [&](int64_t nblk, int64_t r, void *out) {
    ba.ranges = (int)r;
    ba.out = out;
    ba.accum = r == 1 && f32 ? static_cast<float *>(out) : accum;
    kernel<<<dim3((unsigned)nblk, (unsigned)r), kThreads, smem, s>>>(ba);
    L2C_CUDA_CHECK_LAUNCH("infonce_bwd_kernel");
    if (r > 1) {
      const int64_t n = ba.nx * d;
      infonce_bwd_reduce_kernel<Tag><<<grid_stride_blocks(n), kThreads, 0, s>>>(
          accum, (int)r, n, p.scale, p.scale_dev, p.grad_loss, p.grad_loss_dev, coef, out);
      L2C_CUDA_CHECK_LAUNCH("infonce_bwd_reduce_kernel");
    }
  };
  // da: owner a, the other side b; G'[i,j] uses lse_rows[i] (and lse_cols[j]).
  ba.x = p.a;
  ba.y = p.b;
  ba.nx = N;
  ba.ny = M;
  ba.lse_x = p.lse_rows_in;
  ba.lse_y = sym ? p.lse_cols_in : nullptr;
  ba.dpart = dpart;
  pass(nblk_a, ra, p.da);
  // db: owner b, the other side a; G'^T[j,i] uses lse_rows[i] (and lse_cols[j]).
  ba.x = p.b;
  ba.y = p.a;
  ba.nx = M;
  ba.ny = N;
  ba.lse_x = sym ? p.lse_cols_in : nullptr;
  ba.lse_y = p.lse_rows_in;
  ba.dpart = nullptr;
  pass(nblk_b, rb, p.db);
  infonce_dscale_kernel<<<1, kThreads, 0, s>>>(dpart, nblk_a * ra, coef, p.grad_loss, p.grad_loss_dev, p.dscale);
  L2C_CUDA_CHECK_LAUNCH("infonce_dscale_kernel");
}

}  // namespace

void infonce_forward(int device, const InfonceParams &p) {
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  if (p.N == 0) {  // M = 0 too when symmetric; an empty mean is taken as 0
    L2C_CUDA_CHECK(cudaMemsetAsync(p.loss, 0, sizeof(float), s));
    return;
  }
  if (ceil_div(p.N, kThreads / 32) > 2147483647)
    fail(L2C_INVALID_ARGUMENT, "cuda infonce: N " + std::to_string(p.N) + " is too large");
  L2C_FLOAT_DTYPE_SWITCH(p.dtype, Tag, [&] { forward_impl<Tag>(device, p, s); });
}

void infonce_backward(int device, const InfonceParams &p) {
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  if (p.N == 0 || p.d == 0) {  // no logits (or all zero): db = 0, dscale = sum G * 0 = 0
    if (p.M * p.d > 0)
      L2C_CUDA_CHECK(cudaMemsetAsync(p.db, 0, (size_t)(p.M * p.d) * elem_size(p.dtype), s));
    L2C_CUDA_CHECK(cudaMemsetAsync(p.dscale, 0, sizeof(float), s));
    return;
  }
  if (ceil_div(p.M, kBwdBM) > 2147483647)
    fail(L2C_INVALID_ARGUMENT, "cuda infonce_backward: M " + std::to_string(p.M) + " is too large");
  L2C_FLOAT_DTYPE_SWITCH(p.dtype, Tag, [&] { backward_impl<Tag>(p, device, s); });
}

}  // namespace cuda
}  // namespace l2c
