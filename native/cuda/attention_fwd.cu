// attention_fwd.cu: l2c::cuda::attention_forward (FlashAttention-2 forward), same
// semantics as cpu/attention.cc: out = softmax(scale·q·kᵀ over the attendable keys)·v
// and lse per query row; no [S,S] buffer.
//
// Tensor-core kernel (bfloat16 / float16, D <= 128; compiled for a padded head dim
// kD = 64 or 128, tail columns zero-filled): one block of 8 warps per (batch, query
// head, tile of 128 query rows), each warp owning 16 rows. Per key tile of kBc keys
// (128 for kD = 64, 64 for kD = 128): S = Q·Kᵀ by mma.sync m16n8k16 (float32
// accumulators, operands from shared memory by ldmatrix), masking (sequence end,
// padding mask, causal diagonal) on the tiles that need it, the online softmax in
// registers (exp2 of scale·log2e-scaled scores, running max m and per-thread partial
// sums l, the output accumulator rescaled by exp2(m_old − m_new)), then O += P·V with
// P converted in registers to the A operand (no trip through shared memory). Loads
// are cp.async, pipelined as FlashAttention-2 does: V(t) lands during S = Q·K(t),
// K(next) during the softmax and P·V(t). Causal blocks stop at their last diagonal
// tile; key tiles the padding mask empties are skipped.
//
// SIMT kernel (float32, and D > 128 in any dtype; correctness first): 4 warps x 4
// query rows; K and V tiles of 32 keys in shared memory as float32; lane j scores key
// j against the warp's rows, the online softmax reduces over the warp, and each lane
// accumulates D/32 output columns from the probabilities broadcast by shuffles.
#include <string>

#include "attention_common.cuh"
#include "attention_cuda.h"
#include "backend.h"

namespace l2c {
namespace cuda {
namespace attn {
namespace {

constexpr float kNegInf = -INFINITY;

// ------------------------------------------------------------------ tensor cores

template <int kD>
struct FwdTC {
  static constexpr int kBr = 128;                   // query rows per block
  static constexpr int kBc = kD <= 64 ? 128 : 64;   // keys per tile
  static constexpr int kWarps = kBr / 16;           // 8: 16 rows each
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kLd = kD + 8;  // smem row stride: 16-byte rows shifted 4 banks apart
  static constexpr int kSmem = (kBr + 2 * kBc) * kLd * 2;
  static constexpr int kNB = kBc / 8;  // n-blocks of S per warp
  static constexpr int kND = kD / 8;   // n-blocks of O per warp
  static_assert(kBc <= kThreads, "first_live_tile checks one key per thread");
};

template <class Tag, int kD>
__global__ void __launch_bounds__(FwdTC<kD>::kThreads, 1) attn_fwd_tc_kernel(const Args a) {
  using C = FwdTC<kD>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kLd = C::kLd, kNB = C::kNB, kND = C::kND;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t *sQ = reinterpret_cast<uint16_t *>(smem_raw);
  uint16_t *sK = sQ + kBr * kLd;
  uint16_t *sV = sK + kBc * kLd;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int64_t S = a.S, nqt = (S + kBr - 1) / kBr;
  int64_t idx = blockIdx.x;
  const int64_t mt = nqt - 1 - idx % nqt;  // the longest causal tiles first
  idx /= nqt;
  const int64_t h = idx % a.Hq, b = idx / a.Hq, kvh = h / a.G;
  const int64_t i0 = mt * kBr;
  const int D = (int)a.D;
  const uint16_t *qg = static_cast<const uint16_t *>(a.q) + (b * S * a.Hq + h) * a.D;
  const uint16_t *kg = static_cast<const uint16_t *>(a.k) + (b * S * a.Hkv + kvh) * a.D;
  const uint16_t *vg = static_cast<const uint16_t *>(a.v) + (b * S * a.Hkv + kvh) * a.D;
  uint16_t *og = static_cast<uint16_t *>(a.out) + (b * S * a.Hq + h) * a.D;
  float *lse_row = a.lse + (b * a.Hq + h) * S;
  const int32_t *mrow = a.mask ? a.mask + b * S : nullptr;

  // Keys this block may attend: all, or (causal) up to its last row.
  const int64_t kend = a.causal && i0 + kBr < S ? i0 + kBr : S;
  const int nkt = (int)((kend + kBc - 1) / kBc);

  load_tile16<kBr, kD, kLd, C::kThreads>(sQ, qg, a.ldq, i0, S - i0, D, a.vec);
  int kt = first_live_tile<kBc>(0, nkt, mrow, S);
  if (kt < nkt) load_tile16<kBc, kD, kLd, C::kThreads>(sK, kg, a.ldk, (int64_t)kt * kBc, S - (int64_t)kt * kBc, D, a.vec);
  cp_async_commit();

  float o[kND][4];
#pragma unroll
  for (int n = 0; n < kND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {kNegInf, kNegInf}, l[2] = {0.0f, 0.0f};
  const int wrow = warp * 16;  // the warp's first row in the tile

  while (kt < nkt) {
    const int64_t j0 = (int64_t)kt * kBc;
    cp_async_wait<0>();
    __syncthreads();  // Q and K(kt) landed; every warp is done with the previous P·V
    load_tile16<kBc, kD, kLd, C::kThreads>(sV, vg, a.ldk, j0, S - j0, D, a.vec);
    cp_async_commit();

    // S = Q·K(kt)ᵀ for the warp's 16 rows.
    float s[kNB][4];
#pragma unroll
    for (int n = 0; n < kNB; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kD / 16; kk++) {
      uint32_t qa[4];
      ldsm_x4(qa, sQ + (wrow + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int n2 = 0; n2 < kNB / 2; n2++) {
        uint32_t kb[4];  // keys n2·16 + (0..7 | 8..15), depth kk·16 + (0..7 | 8..15)
        ldsm_x4(kb, sK + (n2 * 16 + lane % 8 + (lane / 16) * 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
        mma16816<Tag>(s[2 * n2], qa, kb[0], kb[1]);
        mma16816<Tag>(s[2 * n2 + 1], qa, kb[2], kb[3]);
      }
    }

    const int kn = first_live_tile<kBc>(kt + 1, nkt, mrow, S);

    // Scale (to log2 units) and mask: the sequence end, the padding mask, the diagonal.
    const bool need_mask = j0 + kBc > S || mrow != nullptr || (a.causal && j0 + kBc - 1 > i0);
#pragma unroll
    for (int n = 0; n < kNB; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float x = s[n][e] * a.scale_log2;
        if (need_mask) {
          const int64_t j = j0 + n * 8 + 2 * t4 + (e & 1);
          const int64_t i = i0 + wrow + g + (e >> 1) * 8;
          if (!key_ok(mrow, j, S) || (a.causal && j > i)) x = kNegInf;
        }
        s[n][e] = x;
      }
    // Online softmax; row r of the thread: g (e = 0, 1) and g + 8 (e = 2, 3). The four
    // threads of a quad share a row: max over the quad, partial sums kept per thread.
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = kNegInf;
#pragma unroll
      for (int n = 0; n < kNB; n++) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[r], mx);
      const float m_use = m_new == kNegInf ? 0.0f : m_new;  // a row with no key yet: p = 0
      const float alpha = exp2f(m[r] - m_use);
      m[r] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kNB; n++) {
        s[n][2 * r] = exp2f(s[n][2 * r] - m_use);
        s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - m_use);
        sum += s[n][2 * r] + s[n][2 * r + 1];
      }
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int n = 0; n < kND; n++) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }

    cp_async_wait<0>();
    __syncthreads();  // V(kt) landed; every warp is done with K(kt)
    if (kn < nkt) {
      load_tile16<kBc, kD, kLd, C::kThreads>(sK, kg, a.ldk, (int64_t)kn * kBc, S - (int64_t)kn * kBc, D, a.vec);
      cp_async_commit();
    }

    // O += P·V(kt): the S accumulators of n-blocks 2kk, 2kk+1 are the A fragment of keys
    // kk·16 .. kk·16 + 15.
#pragma unroll
    for (int kk = 0; kk < kBc / 16; kk++) {
      uint32_t pa[4];
      pa[0] = pack2<Tag>(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack2<Tag>(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack2<Tag>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack2<Tag>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int n2 = 0; n2 < kND / 2; n2++) {
        uint32_t vb[4];  // keys kk·16 + (0..7 | 8..15), columns n2·16 + (0..7 | 8..15)
        ldsm_x4_t(vb, sV + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + n2 * 16 + (lane / 16) * 8);
        mma16816<Tag>(o[2 * n2], pa, vb[0], vb[1]);
        mma16816<Tag>(o[2 * n2 + 1], pa, vb[2], vb[3]);
      }
    }
    kt = kn;
  }
  cp_async_wait<0>();

  // out = O / l, lse = (m + log2 l)·ln 2; a row that attended nothing: 0 and -inf.
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float lt = l[r];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    const bool dead = m[r] == kNegInf || !(lt > 0.0f);
    const float inv = dead ? 0.0f : 1.0f / lt;
    const int64_t i = i0 + wrow + g + r * 8;
    if (i >= S) continue;
    if (t4 == 0) lse_row[i] = dead ? kNegInf : (m[r] + log2f(lt)) * kLn2;
    uint16_t *orow = og + i * a.ldq;
#pragma unroll
    for (int n = 0; n < kND; n++) {
      const int col = n * 8 + 2 * t4;
      const uint16_t lo = Tag::from_f32(o[n][2 * r] * inv), hi = Tag::from_f32(o[n][2 * r + 1] * inv);
      if (a.vec) {  // D % 8 == 0 and 16-byte aligned rows: the pair is in or out together
        if (col < D) *reinterpret_cast<uint32_t *>(orow + col) = (uint32_t)lo | ((uint32_t)hi << 16);
      } else {
        if (col < D) orow[col] = lo;
        if (col + 1 < D) orow[col + 1] = hi;
      }
    }
  }
}

// ------------------------------------------------------------------ SIMT

template <int kD>
struct FwdSimt {
  static constexpr int kWarps = 4, kRows = 4;  // rows per warp
  static constexpr int kBr = kWarps * kRows, kBc = 32, kThreads = kWarps * 32;
  static constexpr int kLdK = kD + 1;  // lane j reads row j of K: odd stride, no conflicts
  static constexpr int kSmem = (kBr * kD + kBc * kLdK + kBc * kD) * 4;
  static constexpr int kCols = kD / 32;  // output columns per lane
};

template <class Tag, int kD>
__global__ void __launch_bounds__(FwdSimt<kD>::kThreads) attn_fwd_simt_kernel(const Args a) {
  using C = FwdSimt<kD>;
  using T = typename Tag::T;
  constexpr int kBr = C::kBr, kBc = C::kBc, kRows = C::kRows, kLdK = C::kLdK, kCols = C::kCols;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float *sQ = reinterpret_cast<float *>(smem_raw);  // [kBr][kD]
  float *sK = sQ + kBr * kD;                        // [kBc][kLdK]
  float *sV = sK + kBc * kLdK;                      // [kBc][kD]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t S = a.S, nqt = (S + kBr - 1) / kBr;
  int64_t idx = blockIdx.x;
  const int64_t mt = nqt - 1 - idx % nqt;
  idx /= nqt;
  const int64_t h = idx % a.Hq, b = idx / a.Hq, kvh = h / a.G;
  const int64_t i0 = mt * kBr;
  const int D = (int)a.D;
  const T *qg = static_cast<const T *>(a.q) + (b * S * a.Hq + h) * a.D;
  const T *kg = static_cast<const T *>(a.k) + (b * S * a.Hkv + kvh) * a.D;
  const T *vg = static_cast<const T *>(a.v) + (b * S * a.Hkv + kvh) * a.D;
  T *og = static_cast<T *>(a.out) + (b * S * a.Hq + h) * a.D;
  const int32_t *mrow = a.mask ? a.mask + b * S : nullptr;

  load_tile_f32<Tag, kBr, kD, C::kThreads>(sQ, kD, qg, a.ldq, i0, S - i0, D);

  const int64_t kend = a.causal && i0 + kBr < S ? i0 + kBr : S;
  const int nkt = (int)((kend + kBc - 1) / kBc);
  float m[kRows], l[kRows], acc[kRows][kCols];
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    m[r] = kNegInf;
    l[r] = 0.0f;  // this lane's share of the row sum
#pragma unroll
    for (int c = 0; c < kCols; c++) acc[r][c] = 0.0f;
  }
  const int row0 = warp * kRows;  // the warp's rows in the tile

  for (int kt = 0; kt < nkt; kt++) {
    const int64_t j0 = (int64_t)kt * kBc, j = j0 + lane;
    __syncthreads();  // every warp is done with the previous K and V
    load_tile_f32<Tag, kBc, kD, C::kThreads>(sK, kLdK, kg, a.ldk, j0, S - j0, D);
    load_tile_f32<Tag, kBc, kD, C::kThreads>(sV, kD, vg, a.ldk, j0, S - j0, D);
    const bool kok = key_ok(mrow, j, S);
    if (!__syncthreads_or(tid < kBc && kok)) continue;  // also the barrier after the loads

    float x[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) x[r] = 0.0f;
    for (int d = 0; d < D; d++) {
      const float kv = sK[lane * kLdK + d];
#pragma unroll
      for (int r = 0; r < kRows; r++) x[r] = fmaf(sQ[(row0 + r) * kD + d], kv, x[r]);
    }
    float p[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const int64_t i = i0 + row0 + r;
      const bool ok = kok && (!a.causal || j <= i);
      const float xs = ok ? x[r] * a.scale_log2 : kNegInf;
      const float m_new = fmaxf(m[r], warp_max(xs));
      const float m_use = m_new == kNegInf ? 0.0f : m_new;
      const float alpha = exp2f(m[r] - m_use);
      m[r] = m_new;
      p[r] = exp2f(xs - m_use);
      l[r] = l[r] * alpha + p[r];
#pragma unroll
      for (int c = 0; c < kCols; c++) acc[r][c] *= alpha;
    }
    for (int jj = 0; jj < kBc; jj++) {
      float vv[kCols];
#pragma unroll
      for (int c = 0; c < kCols; c++) vv[c] = sV[jj * kD + lane + 32 * c];
#pragma unroll
      for (int r = 0; r < kRows; r++) {
        const float pj = __shfl_sync(0xffffffffu, p[r], jj);
#pragma unroll
        for (int c = 0; c < kCols; c++) acc[r][c] = fmaf(pj, vv[c], acc[r][c]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const float lt = warp_sum(l[r]);
    const int64_t i = i0 + row0 + r;
    if (i >= S) continue;
    const bool dead = m[r] == kNegInf || !(lt > 0.0f);
    const float inv = dead ? 0.0f : 1.0f / lt;
    if (lane == 0) a.lse[(b * a.Hq + h) * S + i] = dead ? kNegInf : (m[r] + log2f(lt)) * kLn2;
#pragma unroll
    for (int c = 0; c < kCols; c++) {
      const int d = lane + 32 * c;
      if (d < D) og[i * a.ldq + d] = Tag::from_f32(acc[r][c] * inv);
    }
  }
}

// ------------------------------------------------------------------ launch

template <class Tag, int kD>
void launch_tc(const Args &a, cudaStream_t s) {
  using C = FwdTC<kD>;
  auto kernel = attn_fwd_tc_kernel<Tag, kD>;
  allow_smem(kernel, C::kSmem);
  const unsigned grid = flat_grid(a.B * a.Hq * ((a.S + C::kBr - 1) / C::kBr), "attention_forward");
  kernel<<<grid, C::kThreads, C::kSmem, s>>>(a);
  L2C_CUDA_CHECK_LAUNCH("attn_fwd_tc_kernel");
}

template <class Tag, int kD>
void launch_simt(const Args &a, cudaStream_t s) {
  using C = FwdSimt<kD>;
  auto kernel = attn_fwd_simt_kernel<Tag, kD>;
  allow_smem(kernel, C::kSmem);
  const unsigned grid = flat_grid(a.B * a.Hq * ((a.S + C::kBr - 1) / C::kBr), "attention_forward");
  kernel<<<grid, C::kThreads, C::kSmem, s>>>(a);
  L2C_CUDA_CHECK_LAUNCH("attn_fwd_simt_kernel");
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

void launch_forward(int device, const Args &a, l2c_dtype dt, cudaStream_t s) {
  const int kd = padded_head_dim(a.D);
  const int smem_max = max_smem_optin(device);
  const int tc_smem = kd == 64 ? FwdTC<64>::kSmem : FwdTC<128>::kSmem;
  const int simt_smem = kd == 64 ? FwdSimt<64>::kSmem : kd == 128 ? FwdSimt<128>::kSmem : FwdSimt<256>::kSmem;
  if (use_tensor_cores(dt, a.D) && tc_smem <= smem_max) {
    if (dt == L2C_BFLOAT16) {
      if (kd == 64) return launch_tc<BF16, 64>(a, s);
      return launch_tc<BF16, 128>(a, s);
    }
    if (kd == 64) return launch_tc<F16, 64>(a, s);
    return launch_tc<F16, 128>(a, s);
  }
  if (simt_smem > smem_max)
    fail(L2C_DEVICE_UNAVAILABLE, "attention_forward: head dim " + std::to_string(a.D) + " needs " +
                                     std::to_string(simt_smem) + " bytes of shared memory per block; cuda:" +
                                     std::to_string(device) + " has " + std::to_string(smem_max));
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] { launch_simt_dim<Tag>(a, s); });
}

}  // namespace attn

void attention_forward(int device, const AttentionParams &p, void *out, float *lse) {
  DeviceGuard guard(device);
  if (p.B == 0 || p.S == 0 || p.Hq == 0) return;
  attn::Args a{};
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.mask = p.mask;
  a.out = out;
  a.lse = lse;
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
          attn::aligned16(out);
  attn::launch_forward(device, a, p.dt, stream(device));
}

}  // namespace cuda
}  // namespace l2c
