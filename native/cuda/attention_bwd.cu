// attention_bwd.cu: l2c::cuda::attention_backward (FlashAttention-2 backward), same
// semantics as cpu/attention.cc: from dO, q, k, v, out and lse, with
//   Δ_i = rowsum(dO_i ∘ O_i),  P = exp(scale·q·kᵀ − lse),  dV = Pᵀ·dO,  dP = dO·Vᵀ,
//   dS = P ∘ (dP − Δ),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q;
// no [S,S] buffer.
//
// Scheme (FlashAttention-2's): 1) a preprocess kernel writes Δ [B,Hq,S] (float32
// scratch); 2) the main kernel runs one block per (batch, kv head, key tile): the block
// owns dK and dV of its keys in registers, walks every query head of the kv head's group
// and every query tile (causal: from the tile holding its first key), recomputes P from
// lse, and adds its share of dQ (scale·dS·K) with float32 atomicAdd into a float32 [B,S,
// Hq,D] accumulator zeroed first (for float32 dq, dq itself); 3) a cast kernel turns the
// accumulator into dq's dtype. dK and dV are written once, without atomics (zeros for key
// tiles nobody attends); rows with lse = -inf get P = 0, hence zero gradients.
//
// Tensor-core kernel (bfloat16 / float16, D <= 128, padded head dim kD = 64 or 128):
// 8 warps, 64 keys x 64 query rows per step. S = Q·Kᵀ and dP = dO·Vᵀ (warp tile 16 rows x
// 32 keys), P and dS rounded to the input dtype into shared memory, then dV += Pᵀ·dO and
// dK += dSᵀ·Q (warp tile 16 keys x kD/2, A operands by ldmatrix.trans) and dQ = dS·K
// (warp tile 16 rows x kD/2); mma.sync m16n8k16 with float32 accumulators throughout.
// Q and dO tiles are double-buffered with cp.async (the next tile loads during this one).
//
// SIMT kernel (float32, D > 128): 8 warps, 32 keys (one per lane) x 8 query rows (one per
// warp) per step, float32 tiles in shared memory; dQ rows reduce over the warp by
// shuffles, dK / dV are owned per thread (one key, D/8 columns).
#include <string>

#include "attention_common.cuh"
#include "attention_cuda.h"
#include "backend.h"

namespace l2c {
namespace cuda {
namespace attn {
namespace {

// ------------------------------------------------------------------ preprocess / cast

// delta[b, h, i] = Σ_d dO[b,i,h,d] · O[b,i,h,d]: one warp per (b, i, h) row.
template <class Tag>
__global__ void __launch_bounds__(256) attn_bwd_delta_kernel(const Args a) {
  using T = typename Tag::T;
  const T *dout = static_cast<const T *>(a.dout);
  const T *o = static_cast<const T *>(a.o);
  const int lane = threadIdx.x % 32;
  const int64_t rows = a.B * a.S * a.Hq;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    float acc = 0.0f;
    for (int64_t d = lane; d < a.D; d += 32) acc = fmaf(Tag::to_f32(dout[r * a.D + d]), Tag::to_f32(o[r * a.D + d]), acc);
    acc = warp_sum(acc);
    if (lane == 0) {
      const int64_t h = r % a.Hq, i = (r / a.Hq) % a.S, b = r / (a.Hq * a.S);
      a.delta[(b * a.Hq + h) * a.S + i] = acc;
    }
  }
}

template <class Tag>
__global__ void attn_bwd_cast_kernel(const float *src, typename Tag::T *dst, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = Tag::from_f32(src[i]);
}

// ------------------------------------------------------------------ tensor cores

template <int kD>
struct BwdTC {
  static constexpr int kBr = 64, kBc = 64;  // query rows x keys per step
  static constexpr int kWarps = 8, kThreads = kWarps * 32;
  static constexpr int kLd = kD + 8;    // Q, dO, K, V rows (16-byte rows 4 banks apart)
  static constexpr int kLdP = kBc + 8;  // P, dS rows
  static constexpr int kSmem = (2 * kBc * kLd + 4 * kBr * kLd + 2 * kBr * kLdP) * 2;
  static constexpr int kNH = kD / 16;  // n-blocks of 8 columns in a warp's kD/2 columns
  static_assert(kBc <= kThreads, "one key per thread for the mask check");
};

template <class Tag, int kD>
__global__ void __launch_bounds__(BwdTC<kD>::kThreads, 1) attn_bwd_tc_kernel(const Args a) {
  using C = BwdTC<kD>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kLd = C::kLd, kLdP = C::kLdP, kNH = C::kNH;
  constexpr int kHalf = kD / 2;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t *sK = reinterpret_cast<uint16_t *>(smem_raw);
  uint16_t *sV = sK + kBc * kLd;
  uint16_t *sQ = sV + kBc * kLd;   // 2 buffers of kBr x kLd
  uint16_t *sdO = sQ + 2 * kBr * kLd;  // 2 buffers
  uint16_t *sP = sdO + 2 * kBr * kLd;  // kBr x kLdP
  uint16_t *sdS = sP + kBr * kLdP;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int wm = warp % 4, wn = warp / 4;
  const int64_t S = a.S, nkt = (S + kBc - 1) / kBc, nqt = (S + kBr - 1) / kBr;
  int64_t idx = blockIdx.x;
  const int64_t kt = idx % nkt;
  idx /= nkt;
  const int64_t kvh = idx % a.Hkv, b = idx / a.Hkv;
  const int64_t j0 = kt * kBc;
  const int D = (int)a.D;
  const int32_t *mrow = a.mask ? a.mask + b * S : nullptr;
  const int64_t kvoff = (b * S * a.Hkv + kvh) * a.D;

  load_tile16<kBc, kD, kLd, C::kThreads>(sK, static_cast<const uint16_t *>(a.k) + kvoff, a.ldk, j0, S - j0, D, a.vec);
  load_tile16<kBc, kD, kLd, C::kThreads>(sV, static_cast<const uint16_t *>(a.v) + kvoff, a.ldk, j0, S - j0, D, a.vec);
  cp_async_commit();
  const bool live = mrow == nullptr || __syncthreads_or(tid < kBc && key_ok(mrow, j0 + tid, S));

  float dk[kNH][4], dv[kNH][4];
#pragma unroll
  for (int n = 0; n < kNH; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;

  // Steps: (query head of the group) x (query tile), the tiles from the first one that
  // holds a row >= j0 under causality.
  const int64_t qt0 = a.causal ? j0 / kBr : 0, nq = nqt - qt0;
  const int64_t total = live ? a.G * nq : 0;
  auto issue = [&](int64_t it, int buf) {
    const int64_t h = kvh * a.G + it / nq, i0 = (qt0 + it % nq) * kBr;
    const int64_t qoff = (b * S * a.Hq + h) * a.D;
    load_tile16<kBr, kD, kLd, C::kThreads>(sQ + buf * kBr * kLd, static_cast<const uint16_t *>(a.q) + qoff, a.ldq,
                                           i0, S - i0, D, a.vec);
    load_tile16<kBr, kD, kLd, C::kThreads>(sdO + buf * kBr * kLd, static_cast<const uint16_t *>(a.dout) + qoff,
                                           a.ldq, i0, S - i0, D, a.vec);
    cp_async_commit();
  };
  if (total > 0) issue(0, 0);
  const bool need_key_mask = j0 + kBc > S || mrow != nullptr;

  for (int64_t it = 0; it < total; it++) {
    const int buf = (int)(it & 1);
    if (it + 1 < total) {
      issue(it + 1, buf ^ 1);  // into the buffer step it - 1 used (done: barrier at its end)
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // K, V and this step's Q, dO landed
    const int64_t h = kvh * a.G + it / nq, i0 = (qt0 + it % nq) * kBr;
    const uint16_t *sQb = sQ + buf * kBr * kLd, *sdOb = sdO + buf * kBr * kLd;

    // S = Q·Kᵀ, dP = dO·Vᵀ: warp tile rows wm·16.., keys wn·32..
    float sc[4][4], dp[4][4];
#pragma unroll
    for (int n = 0; n < 4; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) sc[n][e] = dp[n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kD / 16; kk++) {
      uint32_t qa[4], oa[4];
      ldsm_x4(qa, sQb + (wm * 16 + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
      ldsm_x4(oa, sdOb + (wm * 16 + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int n2 = 0; n2 < 2; n2++) {
        const int koff = (wn * 32 + n2 * 16 + lane % 8 + (lane / 16) * 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8;
        uint32_t kb[4], vb[4];
        ldsm_x4(kb, sK + koff);
        mma16816<Tag>(sc[2 * n2], qa, kb[0], kb[1]);
        mma16816<Tag>(sc[2 * n2 + 1], qa, kb[2], kb[3]);
        ldsm_x4(vb, sV + koff);
        mma16816<Tag>(dp[2 * n2], oa, vb[0], vb[1]);
        mma16816<Tag>(dp[2 * n2 + 1], oa, vb[2], vb[3]);
      }
    }

    // P = exp2(scale·log2e·s − log2e·lse) (0 where not attendable, and for rows with
    // lse = -inf or past S: their log2 lse is +inf); dS = P ∘ (dP − Δ).
    float lse2[2], dl[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int64_t i = i0 + wm * 16 + g + r * 8;
      lse2[r] = INFINITY;
      dl[r] = 0.0f;
      if (i < S) {
        const float L = a.lse_in[(b * a.Hq + h) * S + i];
        lse2[r] = L == -INFINITY ? INFINITY : L * kLog2e;
        dl[r] = a.delta[(b * a.Hq + h) * S + i];
      }
    }
    const bool need_mask = need_key_mask || (a.causal && j0 + kBc - 1 > i0);
#pragma unroll
    for (int n = 0; n < 4; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e >> 1;
        float p = exp2f(sc[n][e] * a.scale_log2 - lse2[r]);
        if (need_mask) {
          const int64_t j = j0 + wn * 32 + n * 8 + 2 * t4 + (e & 1);
          const int64_t i = i0 + wm * 16 + g + r * 8;
          if (!key_ok(mrow, j, S) || (a.causal && j > i)) p = 0.0f;
        }
        sc[n][e] = p;
        dp[n][e] = p * (dp[n][e] - dl[r]);
      }
#pragma unroll
    for (int n = 0; n < 4; n++)
#pragma unroll
      for (int r = 0; r < 2; r++) {
        const int off = (wm * 16 + g + r * 8) * kLdP + wn * 32 + n * 8 + 2 * t4;
        *reinterpret_cast<uint32_t *>(sP + off) = pack2<Tag>(sc[n][2 * r], sc[n][2 * r + 1]);
        *reinterpret_cast<uint32_t *>(sdS + off) = pack2<Tag>(dp[n][2 * r], dp[n][2 * r + 1]);
      }
    __syncthreads();  // P and dS complete

    // dV += Pᵀ·dO, dK += dSᵀ·Q: warp tile keys wm·16.., columns wn·kD/2..; depth = the
    // step's query rows. A = Pᵀ (dSᵀ) by ldmatrix.trans of P stored [row][key].
#pragma unroll
    for (int kk = 0; kk < kBr / 16; kk++) {
      uint32_t pa[4], da[4];
      const int poff = (kk * 16 + lane % 8 + (lane / 16) * 8) * kLdP + wm * 16 + ((lane / 8) % 2) * 8;
      ldsm_x4_t(pa, sP + poff);
      ldsm_x4_t(da, sdS + poff);
#pragma unroll
      for (int n2 = 0; n2 < kNH / 2; n2++) {
        const int boff = (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + wn * kHalf + n2 * 16 + (lane / 16) * 8;
        uint32_t ob[4], qb[4];
        ldsm_x4_t(ob, sdOb + boff);
        mma16816<Tag>(dv[2 * n2], pa, ob[0], ob[1]);
        mma16816<Tag>(dv[2 * n2 + 1], pa, ob[2], ob[3]);
        ldsm_x4_t(qb, sQb + boff);
        mma16816<Tag>(dk[2 * n2], da, qb[0], qb[1]);
        mma16816<Tag>(dk[2 * n2 + 1], da, qb[2], qb[3]);
      }
    }

    // dQ += scale·dS·K: warp tile rows wm·16.., columns wn·kD/2..; depth = the keys.
    float dq[kNH][4];
#pragma unroll
    for (int n = 0; n < kNH; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) dq[n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kBc / 16; kk++) {
      uint32_t da[4];
      ldsm_x4(da, sdS + (wm * 16 + lane % 16) * kLdP + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int n2 = 0; n2 < kNH / 2; n2++) {
        uint32_t kb[4];
        ldsm_x4_t(kb, sK + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + wn * kHalf + n2 * 16 + (lane / 16) * 8);
        mma16816<Tag>(dq[2 * n2], da, kb[0], kb[1]);
        mma16816<Tag>(dq[2 * n2 + 1], da, kb[2], kb[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int64_t i = i0 + wm * 16 + g + r * 8;
      if (i >= S) continue;
      float *dst = a.dq_acc + ((b * S + i) * a.Hq + h) * a.D;
#pragma unroll
      for (int n = 0; n < kNH; n++) {
        const int col = wn * kHalf + n * 8 + 2 * t4;
        if (col < D) atomicAdd(dst + col, dq[n][2 * r] * a.scale);
        if (col + 1 < D) atomicAdd(dst + col + 1, dq[n][2 * r + 1] * a.scale);
      }
    }
    __syncthreads();  // every warp is done with this step's buffers, P and dS
  }
  cp_async_wait<0>();

  // dK (scaled) and dV of the block's keys.
  uint16_t *dkg = static_cast<uint16_t *>(a.dk) + kvoff;
  uint16_t *dvg = static_cast<uint16_t *>(a.dv) + kvoff;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int64_t j = j0 + wm * 16 + g + r * 8;
    if (j >= S) continue;
#pragma unroll
    for (int n = 0; n < kNH; n++) {
      const int col = wn * kHalf + n * 8 + 2 * t4;
      const uint16_t k0 = Tag::from_f32(dk[n][2 * r] * a.scale), k1 = Tag::from_f32(dk[n][2 * r + 1] * a.scale);
      const uint16_t v0 = Tag::from_f32(dv[n][2 * r]), v1 = Tag::from_f32(dv[n][2 * r + 1]);
      uint16_t *kr = dkg + j * a.ldk + col, *vr = dvg + j * a.ldk + col;
      if (a.vec) {  // D % 8 == 0, 16-byte aligned rows: the pair is in or out together
        if (col < D) {
          *reinterpret_cast<uint32_t *>(kr) = (uint32_t)k0 | ((uint32_t)k1 << 16);
          *reinterpret_cast<uint32_t *>(vr) = (uint32_t)v0 | ((uint32_t)v1 << 16);
        }
      } else {
        if (col < D) {
          kr[0] = k0;
          vr[0] = v0;
        }
        if (col + 1 < D) {
          kr[1] = k1;
          vr[1] = v1;
        }
      }
    }
  }
}

// ------------------------------------------------------------------ SIMT

template <int kD>
struct BwdSimt {
  static constexpr int kWarps = 8, kThreads = kWarps * 32;
  static constexpr int kBr = kWarps, kBc = 32;  // one query row per warp, one key per lane
  static constexpr int kLdK = kD + 1;           // lane j reads row j: odd stride
  static constexpr int kLdP = kBc + 1;
  static constexpr int kSmem = (2 * kBc * kLdK + 2 * kBr * kD + 2 * kBr * kLdP) * 4;
  static constexpr int kCK = kD / 8;   // dK / dV columns per thread
  static constexpr int kCQ = kD / 32;  // dQ columns per lane
  static_assert(kThreads == kBc * 8, "dK / dV: 8 threads per key");
};

template <class Tag, int kD>
__global__ void __launch_bounds__(BwdSimt<kD>::kThreads, 1) attn_bwd_simt_kernel(const Args a) {
  using C = BwdSimt<kD>;
  using T = typename Tag::T;
  constexpr int kBr = C::kBr, kBc = C::kBc, kLdK = C::kLdK, kLdP = C::kLdP, kCK = C::kCK, kCQ = C::kCQ;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float *sK = reinterpret_cast<float *>(smem_raw);  // [kBc][kLdK]
  float *sV = sK + kBc * kLdK;                      // [kBc][kLdK]
  float *sQ = sV + kBc * kLdK;                      // [kBr][kD]
  float *sdO = sQ + kBr * kD;                       // [kBr][kD]
  float *sP = sdO + kBr * kD;                       // [kBr][kLdP]
  float *sdS = sP + kBr * kLdP;                     // [kBr][kLdP]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t S = a.S, nkt = (S + kBc - 1) / kBc, nqt = (S + kBr - 1) / kBr;
  int64_t idx = blockIdx.x;
  const int64_t kt = idx % nkt;
  idx /= nkt;
  const int64_t kvh = idx % a.Hkv, b = idx / a.Hkv;
  const int64_t j0 = kt * kBc, j = j0 + lane;
  const int D = (int)a.D;
  const int32_t *mrow = a.mask ? a.mask + b * S : nullptr;
  const int64_t kvoff = (b * S * a.Hkv + kvh) * a.D;

  load_tile_f32<Tag, kBc, kD, C::kThreads>(sK, kLdK, static_cast<const T *>(a.k) + kvoff, a.ldk, j0, S - j0, D);
  load_tile_f32<Tag, kBc, kD, C::kThreads>(sV, kLdK, static_cast<const T *>(a.v) + kvoff, a.ldk, j0, S - j0, D);
  const bool kok = key_ok(mrow, j, S);
  const bool live = __syncthreads_or(tid < kBc && kok);  // also the barrier after the loads

  const int jk = tid / 8, dsub = tid % 8;  // dK / dV: key jk, columns dsub + 8c
  float dka[kCK], dva[kCK];
#pragma unroll
  for (int c = 0; c < kCK; c++) dka[c] = dva[c] = 0.0f;

  if (live) {
    const int64_t qt0 = a.causal ? j0 / kBr : 0;
    for (int64_t gh = 0; gh < a.G; gh++) {
      const int64_t h = kvh * a.G + gh;
      const int64_t qoff = (b * S * a.Hq + h) * a.D;
      const T *qg = static_cast<const T *>(a.q) + qoff;
      const T *dog = static_cast<const T *>(a.dout) + qoff;
      const float *lrow = a.lse_in + (b * a.Hq + h) * S, *drow = a.delta + (b * a.Hq + h) * S;
      for (int64_t qt = qt0; qt < nqt; qt++) {
        const int64_t i0 = qt * kBr, i = i0 + warp;
        __syncthreads();  // every warp is done with the previous Q, dO, P, dS
        load_tile_f32<Tag, kBr, kD, C::kThreads>(sQ, kD, qg, a.ldq, i0, S - i0, D);
        load_tile_f32<Tag, kBr, kD, C::kThreads>(sdO, kD, dog, a.ldq, i0, S - i0, D);
        __syncthreads();

        float s = 0.0f, dpv = 0.0f;
        for (int d = 0; d < D; d++) {
          s = fmaf(sQ[warp * kD + d], sK[lane * kLdK + d], s);
          dpv = fmaf(sdO[warp * kD + d], sV[lane * kLdK + d], dpv);
        }
        float lse2 = INFINITY, dl = 0.0f;
        if (i < S) {
          const float L = lrow[i];
          lse2 = L == -INFINITY ? INFINITY : L * kLog2e;
          dl = drow[i];
        }
        const bool ok = kok && (!a.causal || j <= i);
        const float p = ok ? exp2f(s * a.scale_log2 - lse2) : 0.0f;
        const float ds = p * (dpv - dl) * a.scale;
        sP[warp * kLdP + lane] = p;
        sdS[warp * kLdP + lane] = ds;
        // dQ row i += Σ_j ds_j k_j (warp-local; i is the same for the whole warp).
        if (i < S && __any_sync(0xffffffffu, ds != 0.0f)) {
          float dqv[kCQ];
#pragma unroll
          for (int c = 0; c < kCQ; c++) dqv[c] = 0.0f;
          for (int jj = 0; jj < kBc; jj++) {
            const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
            for (int c = 0; c < kCQ; c++) dqv[c] = fmaf(dsj, sK[jj * kLdK + lane + 32 * c], dqv[c]);
          }
          float *dst = a.dq_acc + ((b * S + i) * a.Hq + h) * a.D;
#pragma unroll
          for (int c = 0; c < kCQ; c++)
            if (lane + 32 * c < D) atomicAdd(dst + lane + 32 * c, dqv[c]);
        }
        __syncthreads();  // P and dS complete
        for (int r = 0; r < kBr; r++) {
          const float pr = sP[r * kLdP + jk], dsr = sdS[r * kLdP + jk];
#pragma unroll
          for (int c = 0; c < kCK; c++) {
            dva[c] = fmaf(pr, sdO[r * kD + dsub + 8 * c], dva[c]);
            dka[c] = fmaf(dsr, sQ[r * kD + dsub + 8 * c], dka[c]);
          }
        }
      }
    }
  }

  const int64_t jw = j0 + jk;
  if (jw < S) {
    T *dkr = static_cast<T *>(a.dk) + kvoff + jw * a.ldk;
    T *dvr = static_cast<T *>(a.dv) + kvoff + jw * a.ldk;
#pragma unroll
    for (int c = 0; c < kCK; c++) {
      const int d = dsub + 8 * c;
      if (d < D) {
        dkr[d] = Tag::from_f32(dka[c]);
        dvr[d] = Tag::from_f32(dva[c]);
      }
    }
  }
}

// ------------------------------------------------------------------ launch

template <class Tag, int kD>
void launch_tc(const Args &a, cudaStream_t s) {
  using C = BwdTC<kD>;
  auto kernel = attn_bwd_tc_kernel<Tag, kD>;
  allow_smem(kernel, C::kSmem);
  const unsigned grid = flat_grid(a.B * a.Hkv * ((a.S + C::kBc - 1) / C::kBc), "attention_backward");
  kernel<<<grid, C::kThreads, C::kSmem, s>>>(a);
  L2C_CUDA_CHECK_LAUNCH("attn_bwd_tc_kernel");
}

template <class Tag, int kD>
void launch_simt(const Args &a, cudaStream_t s) {
  using C = BwdSimt<kD>;
  auto kernel = attn_bwd_simt_kernel<Tag, kD>;
  allow_smem(kernel, C::kSmem);
  const unsigned grid = flat_grid(a.B * a.Hkv * ((a.S + C::kBc - 1) / C::kBc), "attention_backward");
  kernel<<<grid, C::kThreads, C::kSmem, s>>>(a);
  L2C_CUDA_CHECK_LAUNCH("attn_bwd_simt_kernel");
}

template <class Tag>
void launch_simt_dim(const Args &a, cudaStream_t s) {
  switch (padded_head_dim(a.D)) {
    case 64: return launch_simt<Tag, 64>(a, s);
    case 128: return launch_simt<Tag, 128>(a, s);
    default: return launch_simt<Tag, 256>(a, s);
  }
}

}  // namespace

void launch_backward(int device, const Args &a, l2c_dtype dt, cudaStream_t s) {
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    attn_bwd_delta_kernel<Tag><<<grid_stride_blocks(a.B * a.S * a.Hq * 32), 256, 0, s>>>(a);
    L2C_CUDA_CHECK_LAUNCH("attn_bwd_delta_kernel");
  });
  const int kd = padded_head_dim(a.D);
  const int smem_max = max_smem_optin(device);
  const int tc_smem = kd == 64 ? BwdTC<64>::kSmem : BwdTC<128>::kSmem;
  const int simt_smem = kd == 64 ? BwdSimt<64>::kSmem : kd == 128 ? BwdSimt<128>::kSmem : BwdSimt<256>::kSmem;
  if (use_tensor_cores(dt, a.D) && tc_smem <= smem_max) {
    if (dt == L2C_BFLOAT16) {
      if (kd == 64) return launch_tc<BF16, 64>(a, s);
      return launch_tc<BF16, 128>(a, s);
    }
    if (kd == 64) return launch_tc<F16, 64>(a, s);
    return launch_tc<F16, 128>(a, s);
  }
  if (simt_smem > smem_max)
    fail(L2C_DEVICE_UNAVAILABLE, "attention_backward: head dim " + std::to_string(a.D) + " needs " +
                                     std::to_string(simt_smem) + " bytes of shared memory per block; cuda:" +
                                     std::to_string(device) + " has " + std::to_string(smem_max));
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] { launch_simt_dim<Tag>(a, s); });
}

}  // namespace attn

void attention_backward(int device, const AttentionParams &p, const void *dout, const void *out,
                        const float *lse, void *dq, void *dk, void *dv) {
  DeviceGuard guard(device);
  if (p.B == 0 || p.S == 0) return;
  cudaStream_t s = stream(device);
  const size_t es = elem_size(p.dt);
  if (p.Hq == 0) {  // no query head: dk and dv are zeros (dq is empty)
    const size_t bytes = (size_t)(p.B * p.S * p.Hkv * p.D) * es;
    L2C_CUDA_CHECK(cudaMemsetAsync(dk, 0, bytes, s));
    L2C_CUDA_CHECK(cudaMemsetAsync(dv, 0, bytes, s));
    return;
  }
  attn::Args a{};
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.mask = p.mask;
  a.dout = dout;
  a.o = out;
  a.lse_in = lse;
  a.dk = dk;
  a.dv = dv;
  a.B = p.B;
  a.S = p.S;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.D = p.D;
  a.G = p.Hq / p.Hkv;
  a.ldq = p.Hq * p.D;
  a.ldk = p.Hkv * p.D;
  a.scale = p.scale;
  a.scale_log2 = p.scale * attn::kLog2e;
  a.causal = p.causal;
  a.vec = p.D % 8 == 0 && attn::aligned16(p.q) && attn::aligned16(p.k) && attn::aligned16(p.v) &&
          attn::aligned16(dout) && attn::aligned16(dk) && attn::aligned16(dv);

  const int64_t nq = p.B * p.S * p.Hq;
  attn::Scratch delta(device, (size_t)nq * sizeof(float));
  const bool f32 = p.dt == L2C_FLOAT32;
  attn::Scratch acc(device, f32 ? 0 : (size_t)(nq * p.D) * sizeof(float));
  a.delta = delta.f();
  a.dq_acc = f32 ? static_cast<float *>(dq) : acc.f();
  L2C_CUDA_CHECK(cudaMemsetAsync(a.dq_acc, 0, (size_t)(nq * p.D) * sizeof(float), s));
  attn::launch_backward(device, a, p.dt, s);
  if (!f32) {
    const int64_t n = nq * p.D;
    L2C_FLOAT_DTYPE_SWITCH(p.dt, Tag, [&] {
      attn::attn_bwd_cast_kernel<Tag>
          <<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(a.dq_acc, static_cast<typename Tag::T *>(dq), n);
      L2C_CUDA_CHECK_LAUNCH("attn_bwd_cast_kernel");
    });
  }
}

}  // namespace cuda
}  // namespace l2c
