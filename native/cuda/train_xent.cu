// train_xent.cu: cross-entropy fused with the output projection on CUDA (l2c_train.h),
// the twin of cpu/train_xent.cc: the [tokens, vocab] logits never exist.
//
// Targets first: one kernel flags the rows that take part (target != ignore_index) and
// records the first target outside [0, V) (atomicMin), CUB's DeviceSelect::Flagged
// compacts the row indices in order, and one device-to-host read brings (first bad, count)
// back: INVALID_ARGUMENT as the CPU words it, or the count R of rows, which sizes the
// blocks below. That read is the only wait on the host in both directions.
//
// The R rows are processed in blocks of NB (default up to 4096, fewer for wide chunks); the
// vocabulary in chunks of `chunk_size` columns (the last one shorter). Per block the hidden
// rows are gathered into a compact [nb, H] buffer, then per chunk:
//   forward:  tile[nb, cols] (float32) = hidden_block . W_chunk^T through l2c::cuda::matmul;
//             one CTA per row folds (tile + bias) into the row's running (max, sum exp) (the
//             online logsumexp, NaN kept sticky as on the CPU) and picks the target's logit;
//             after the last chunk lse = max + log(sum) (float64) is scattered to its row and
//             lse - logit[target] kept per row; after the last block one CTA adds those in a
//             fixed order (float64) into the 0-d loss: deterministic, no host sync.
//   backward: the same tile, turned in place into dlogits = s (exp(tile + bias - lse) -
//             onehot) (s = grad_loss / R or grad_loss); dbias (+)= its column sums (a thread
//             per column, rows in order); dW[chunk] = dlogits^T . hidden_block (straight into
//             dweight for the first block, else into scratch added after: matmul overwrites
//             C); dH_block (+)= dlogits . W_chunk (first chunk straight, then scratch + add),
//             and after the last chunk dH_block is rounded once into dhidden's rows. Rows
//             without a target stay zero (dhidden is cleared first).
// Operand dtypes: the logits GEMM runs in the storage dtype when hidden and weight share it
// (the forward's and backward's logits are then the same numbers); otherwise both sides
// are widened to float32 (exact). The two backward GEMMs take float32 dlogits, so their
// other operand is widened to float32 too (exact): dlogits are never rounded to 16 bits,
// as on the CPU.
#include <cub/device/device_select.cuh>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <type_traits>

#include "backend.h"
#include "cuda_common.cuh"
#include "train_common.cuh"
#include "train_cuda.h"

namespace l2c {
namespace cuda {
namespace {

using train::Scratch;

constexpr int kRowThreads = 256;        // one CTA per token row of a chunk
constexpr int64_t kMaxBlockRows = 4096;  // token rows per block, at most
constexpr int64_t kTileFloats = int64_t(1) << 25;  // 128 MiB of float32 tile, at most

std::atomic<int64_t> g_block_rows{0};  // test hook (0: default)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------- targets

struct TargetPrep {
  const int32_t *targets;
  int64_t V, ignore_index;
  uint8_t *keep;
  int64_t *iota;
};

// keep[i] = targets[i] != ignore_index, iota[i] = i, and the first kept target outside
// [0, V) into *first (atomicMin; left all ones when there is none).
__global__ void __launch_bounds__(kElementwiseThreads)
    prep_targets_kernel(TargetPrep p, int64_t n, unsigned long long *first) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t t = p.targets[i];
    const bool keep = t != p.ignore_index;
    p.keep[i] = keep ? 1 : 0;
    p.iota[i] = i;
    if (keep && (t < 0 || t >= p.V)) atomicMin(first, (unsigned long long)i);
  }
}

struct Counts {
  unsigned long long first_bad;
  int64_t selected;
};

// rows (device, int64 [N]) = the indices of the rows with a target, ascending; returns
// their count R. Throws INVALID_ARGUMENT for a bad target, worded as cpu::make_plan.
int64_t select_rows(int device, const char *op, const CrossEntropyParams &p, int64_t V,
                    Scratch &rows) {
  const l2c_tensor &t = *p.targets;
  const int64_t N = t.shape[0];
  if (N == 0) return 0;
  cudaStream_t s = stream(device);
  const size_t kb = train::align_up((size_t)N, 256), ib = train::align_up((size_t)N * 8, 256);
  Scratch work(device, kb + ib + sizeof(Counts));
  uint8_t *keep = work.as<uint8_t>();
  int64_t *iota = reinterpret_cast<int64_t *>(work.as<char>() + kb);
  Counts *counts = reinterpret_cast<Counts *>(work.as<char>() + kb + ib);
  rows.reset(device, (size_t)N * 8);
  L2C_CUDA_CHECK(cudaMemsetAsync(&counts->first_bad, 0xff, sizeof(unsigned long long), s));
  TargetPrep tp{static_cast<const int32_t *>(t.data), V, p.ignore_index, keep, iota};
  prep_targets_kernel<<<grid_stride_blocks(N), kElementwiseThreads, 0, s>>>(tp, N, &counts->first_bad);
  L2C_CUDA_CHECK_LAUNCH("prep_targets_kernel");
  size_t temp_bytes = 0;
  L2C_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, temp_bytes, iota, keep, rows.as<int64_t>(),
                                            &counts->selected, N, s));
  Scratch temp(device, std::max<size_t>(temp_bytes, 1));
  L2C_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.as(), temp_bytes, iota, keep, rows.as<int64_t>(),
                                            &counts->selected, N, s));
  Counts c;
  copy_d2h(device, &c, counts, sizeof c);
  if (c.first_bad != ~0ull) {
    const int64_t n = (int64_t)c.first_bad;
    const int64_t tg = train::read_i32(device, t.data, n);
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": targets[" + std::to_string(n) + "] = " +
                                   std::to_string(tg) + " is outside [0, " + std::to_string(V) +
                                   ") and is not ignore_index (" + std::to_string(p.ignore_index) + ")");
  }
  return c.selected;
}

// ---------------------------------------------------------------- small kernels

// out[r, k] = In(src[rows[r], k]) as Out, for r < nb, k < H.
template <typename In, typename Out>
__global__ void __launch_bounds__(kElementwiseThreads)
    gather_hidden_kernel(typename Out::T *__restrict__ out, const typename In::T *__restrict__ src,
                         const int64_t *__restrict__ rows, int64_t nb, int64_t H) {
  const int64_t total = nb * H, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / H, k = i - r * H;
    const typename In::T v = src[rows[r] * H + k];
    if constexpr (std::is_same_v<In, Out>)
      out[i] = v;
    else
      out[i] = Out::from_f32(In::to_f32(v));
  }
}

// out[i] = float(src[i]), i < n.
template <typename In>
__global__ void __launch_bounds__(kElementwiseThreads)
    widen_kernel(float *__restrict__ out, const typename In::T *__restrict__ src, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = In::to_f32(src[i]);
}

// dst[i] += src[i], i < n.
__global__ void __launch_bounds__(kElementwiseThreads)
    add_kernel(float *__restrict__ dst, const float *__restrict__ src, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] += src[i];
}

// dst[rows[r], k] = Out(acc[r, k]).
template <typename Out>
__global__ void __launch_bounds__(kElementwiseThreads)
    scatter_rows_kernel(typename Out::T *__restrict__ dst, const float *__restrict__ acc,
                        const int64_t *__restrict__ rows, int64_t nb, int64_t H) {
  const int64_t total = nb * H, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / H, k = i - r * H;
    dst[rows[r] * H + k] = Out::from_f32(acc[i]);
  }
}

__global__ void __launch_bounds__(kElementwiseThreads)
    init_online_kernel(float *__restrict__ m, float *__restrict__ l, float *__restrict__ ptl, int64_t nb) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nb; i += stride) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
    ptl[i] = 0.0f;
  }
}

// The bias of a chunk, or none (dt < 0).
struct Bias {
  const void *p;
  int dt;
  __device__ __forceinline__ float at(int64_t j) const {
    return dt < 0 ? 0.0f : train::load_f32(p, (l2c_dtype)dt, j);
  }
};

// One CTA per row r of the block: fold x = tile[r, :cols] + bias[c0:] into the row's online
// (m, l) (sum exp(x - m) = l), as cpu row_online_*: a NaN makes m NaN for good; an all
// -inf chunk changes nothing. ptl[r] = x[target - c0] when the target is in this chunk.
__global__ void __launch_bounds__(kRowThreads)
    online_lse_kernel(const float *__restrict__ tile, int64_t ld, int64_t cols, Bias bias, int64_t c0,
                      const int32_t *__restrict__ targets, const int64_t *__restrict__ rows,
                      float *__restrict__ m, float *__restrict__ l, float *__restrict__ ptl) {
  __shared__ float smem[32];
  const int64_t r = blockIdx.x;
  const float *x = tile + r * ld;
  const int64_t tj = (int64_t)targets[rows[r]] - c0;
  float mx = -INFINITY, nan = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) {
    const float v = x[j] + bias.at(c0 + j);
    if (v != v) nan = 1.0f;
    else mx = fmaxf(mx, v);
    if (j == tj) ptl[r] = v;
  }
  mx = train::block_reduce<kRowThreads>(mx, smem, train::MaxOp(), -INFINITY);
  nan = train::block_reduce<kRowThreads>(nan, smem, train::MaxOp(), 0.0f);
  const float cm = nan != 0.0f ? NAN : mx;
  const float mo = m[r];
  const float mn = cm != cm ? cm : (mo < cm ? cm : mo);  // std::max(mo, cm), NaN kept
  if (mn == -INFINITY) return;  // the same for every thread of the block
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) s += expf(x[j] + bias.at(c0 + j) - mn);
  s = train::block_reduce<kRowThreads>(s, smem, train::SumOp(), 0.0f);
  if (threadIdx.x == 0) {
    l[r] = l[r] * expf(mo - mn) + s;
    m[r] = mn;
  }
}

// After the last chunk: lse of each row of the block (float64 as the CPU's merge), written
// to lse[rows[r]], and contrib[r] = lse - logit[target].
__global__ void __launch_bounds__(kElementwiseThreads)
    finish_lse_kernel(const float *__restrict__ m, const float *__restrict__ l, const float *__restrict__ ptl,
                      const int64_t *__restrict__ rows, int64_t nb, float *__restrict__ lse,
                      double *__restrict__ contrib) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < nb; r += stride) {
    const float mv = m[r];
    double v;
    if (mv != mv) v = NAN;
    else if (mv == -INFINITY) v = -INFINITY;
    else v = (double)mv + log((double)l[r]);
    lse[rows[r]] = (float)v;
    contrib[r] = v - (double)ptl[r];
  }
}

// One CTA: loss = sum of contrib[0..R) (float64, fixed order), / R for the mean (0 when
// R == 0).
__global__ void __launch_bounds__(kRowThreads)
    loss_kernel(const double *__restrict__ contrib, int64_t R, int mean, float *__restrict__ loss) {
  __shared__ double smem[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < R; i += kRowThreads) s += contrib[i];
  s = train::block_reduce<kRowThreads>(s, smem, train::SumOp(), 0.0);
  if (threadIdx.x == 0) *loss = (float)(mean ? (R > 0 ? s / (double)R : 0.0) : s);
}

// One CTA per row r: tile[r, j] = scale exp(tile[r, j] + bias[c0 + j] - lse[row]), minus
// scale at the target's column (dlogits, in place), as cpu row_grad_* and its fix-up.
__global__ void __launch_bounds__(kRowThreads)
    dlogits_kernel(float *__restrict__ tile, int64_t ld, int64_t cols, Bias bias, int64_t c0,
                   const int32_t *__restrict__ targets, const int64_t *__restrict__ rows,
                   const float *__restrict__ lse, float scale) {
  const int64_t r = blockIdx.x, n = rows[r];
  float *x = tile + r * ld;
  const float ln = lse[n];
  const int64_t tj = (int64_t)targets[n] - c0;
  for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) {
    float d = __fmul_rn(scale, expf(x[j] + bias.at(c0 + j) - ln));
    if (j == tj) d = __fsub_rn(d, scale);
    x[j] = d;
  }
}

// db[j] += sum over r < nb of tile[r, j], rows in order (a thread per column).
__global__ void __launch_bounds__(kElementwiseThreads)
    column_sums_kernel(float *__restrict__ db, const float *__restrict__ tile, int64_t ld, int64_t cols, int64_t nb) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += stride) {
    float acc = db[j];
    for (int64_t r = 0; r < nb; r++) acc += tile[r * ld + j];
    db[j] = acc;
  }
}

// Row stride of the logits tile: the chunk width rounded up to 8 floats (32 bytes), so
// that every row of the tile starts aligned for vector loads in the GEMMs and kernels.
int64_t tile_ld(int64_t cols) { return (cols + 7) / 8 * 8; }

unsigned blocks_for(int64_t n, int threads = kElementwiseThreads) {
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), kMaxGridStrideBlocks));
}

// ---------------------------------------------------------------- the plan

struct Plan {
  int device;
  cudaStream_t s;
  int64_t N, H, V, R;
  l2c_dtype hdt, wdt;
  bool same;          // hidden and weight share a dtype: logits GEMM in it
  int64_t ce, nb_max;  // chunk width, rows per block
  Bias bias;
  Scratch rows;       // int64 [N]: the rows with a target, ascending
};

void make_plan(int device, const char *op, const CrossEntropyParams &p, Plan &pl) {
  pl.device = device;
  pl.s = stream(device);
  pl.N = p.hidden->shape[0];
  pl.H = p.hidden->shape[1];
  pl.V = p.weight->shape[0];
  pl.hdt = p.hidden->dtype;
  pl.wdt = p.weight->dtype;
  pl.same = pl.hdt == pl.wdt;
  pl.bias = Bias{p.bias ? p.bias->data : nullptr, p.bias ? (int)p.bias->dtype : -1};
  pl.R = select_rows(device, op, p, pl.V, pl.rows);
  pl.ce = std::max<int64_t>(1, std::min(p.chunk_size, pl.V));
  int64_t nb = g_block_rows.load();
  if (nb <= 0) nb = std::max<int64_t>(64, std::min(kMaxBlockRows, kTileFloats / pl.ce));
  pl.nb_max = std::max<int64_t>(1, std::min(nb, pl.R));
}

// hb[nb, H] (dtype of Out) = hidden rows rows[0..nb) (of dtype In).
template <typename In, typename Out>
void gather_hidden(const Plan &pl, const void *hidden, const int64_t *rows, int64_t nb, void *hb) {
  if (nb * pl.H == 0) return;
  gather_hidden_kernel<In, Out><<<blocks_for(nb * pl.H), kElementwiseThreads, 0, pl.s>>>(
      static_cast<typename Out::T *>(hb), static_cast<const typename In::T *>(hidden), rows, nb, pl.H);
  L2C_CUDA_CHECK_LAUNCH("gather_hidden_kernel");
}

// wf[cols, H] = float(weight rows c0..c0+cols).
void widen_weight(const Plan &pl, const void *weight, int64_t c0, int64_t cols, float *wf) {
  const int64_t n = cols * pl.H;
  if (n == 0) return;
  L2C_FLOAT_DTYPE_SWITCH(pl.wdt, In, [&] {
    widen_kernel<In><<<blocks_for(n), kElementwiseThreads, 0, pl.s>>>(
        wf, static_cast<const typename In::T *>(weight) + c0 * pl.H, n);
    L2C_CUDA_CHECK_LAUNCH("widen_kernel");
  });
}

void add_into(const Plan &pl, float *dst, const float *src, int64_t n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kElementwiseThreads, 0, pl.s>>>(dst, src, n);
  L2C_CUDA_CHECK_LAUNCH("add_kernel");
}

// C[M,N] (float32, ldc) = op(A) . op(B), through l2c::cuda::matmul.
void gemm(const Plan &pl, l2c_dtype in, int64_t M, int64_t N, int64_t K, const void *a, int64_t lda,
          bool ta, const void *b, int64_t ldb, bool tb, float *c, int64_t ldc) {
  MatmulParams mp;
  mp.a = a;
  mp.b = b;
  mp.c = c;
  mp.in_dtype = in;
  mp.out_dtype = L2C_FLOAT32;
  mp.M = M;
  mp.N = N;
  mp.K = K;
  mp.lda = lda;
  mp.ldb = ldb;
  mp.ldc = ldc;
  mp.trans_a = ta;
  mp.trans_b = tb;
  matmul(pl.device, mp);
}

// The per-block operands of the logits GEMM and the backward's float32 ones.
struct BlockBufs {
  Scratch hb;   // [nb_max, H], hidden's dtype (used when pl.same)
  Scratch hbf;  // [nb_max, H] float32 (when !pl.same, or the backward with 16-bit hidden)
  Scratch wf;   // [ce, H] float32 (when !pl.same, or the backward with 16-bit weight)
  Scratch tile;  // [nb_max, ce] float32
  void *h_native = nullptr;  // the logits GEMM's A operand, of dtype a_dt
  float *h_f32 = nullptr;    // the hidden block in float32
  l2c_dtype a_dt = L2C_FLOAT32;
};

void alloc_block_bufs(const Plan &pl, bool backward, BlockBufs &b) {
  const size_t rows_h = (size_t)(pl.nb_max * pl.H);
  if (pl.same) {
    b.hb.reset(pl.device, rows_h * elem_size(pl.hdt));
    b.h_native = b.hb.as();
    b.a_dt = pl.hdt;
  }
  const bool need_hf = !pl.same || (backward && pl.hdt != L2C_FLOAT32);
  if (need_hf) b.hbf.reset(pl.device, rows_h * 4);
  b.h_f32 = need_hf ? b.hbf.as<float>() : (pl.hdt == L2C_FLOAT32 ? static_cast<float *>(b.h_native) : nullptr);
  if (!pl.same) {
    b.h_native = b.h_f32;
    b.a_dt = L2C_FLOAT32;
  }
  if (!pl.same || (backward && pl.wdt != L2C_FLOAT32)) b.wf.reset(pl.device, (size_t)(pl.ce * pl.H) * 4);
  b.tile.reset(pl.device, (size_t)(pl.nb_max * tile_ld(pl.ce)) * 4);
}

void gather_block(const Plan &pl, const void *hidden, const int64_t *rows, int64_t nb, BlockBufs &b) {
  L2C_FLOAT_DTYPE_SWITCH(pl.hdt, In, [&] {
    if (pl.same) gather_hidden<In, In>(pl, hidden, rows, nb, b.hb.as());
    if (b.hbf.as()) gather_hidden<In, F32>(pl, hidden, rows, nb, b.hbf.as());
  });
}

// tile[nb, cols] (row stride tile_ld(cols)) = hidden block . W[c0:c0+cols]^T. For !pl.same,
// b.wf must hold the widened chunk already.
void logits_tile(const Plan &pl, const void *weight, int64_t nb, int64_t c0, int64_t cols, BlockBufs &b) {
  const int64_t ldh = std::max<int64_t>(1, pl.H);
  const void *wc = pl.same ? static_cast<const void *>(static_cast<const char *>(weight) +
                                                      c0 * pl.H * (int64_t)elem_size(pl.wdt))
                           : static_cast<const void *>(b.wf.as());
  gemm(pl, b.a_dt, nb, cols, pl.H, b.h_native, ldh, false, wc, ldh, true, b.tile.as<float>(), tile_ld(cols));
}

}  // namespace

void set_cross_entropy_block_rows(int64_t rows) { g_block_rows.store(rows > 0 ? rows : 0); }

void cross_entropy_forward(int device, const CrossEntropyParams &p) {
  DeviceGuard guard(device);
  Plan pl;
  make_plan(device, "cross_entropy", p, pl);
  float *lse = static_cast<float *>(p.lse->data);
  if (pl.N > 0) L2C_CUDA_CHECK(cudaMemsetAsync(lse, 0, (size_t)pl.N * 4, pl.s));  // ignored rows: 0
  const int64_t R = pl.R;
  Scratch contrib(device, (size_t)R * 8);
  if (R > 0) {
    BlockBufs b;
    alloc_block_bufs(pl, false, b);
    Scratch ml(device, (size_t)pl.nb_max * 3 * 4);
    float *m = ml.as<float>(), *l = m + pl.nb_max, *ptl = l + pl.nb_max;
    const int64_t *rows = pl.rows.as<int64_t>();
    const int32_t *targets = static_cast<const int32_t *>(p.targets->data);
    for (int64_t b0 = 0; b0 < R; b0 += pl.nb_max) {
      const int64_t nb = std::min(pl.nb_max, R - b0);
      gather_block(pl, p.hidden->data, rows + b0, nb, b);
      init_online_kernel<<<blocks_for(nb), kElementwiseThreads, 0, pl.s>>>(m, l, ptl, nb);
      L2C_CUDA_CHECK_LAUNCH("init_online_kernel");
      for (int64_t c0 = 0; c0 < pl.V; c0 += pl.ce) {
        const int64_t cols = std::min(pl.ce, pl.V - c0);
        if (!pl.same) widen_weight(pl, p.weight->data, c0, cols, b.wf.as<float>());
        logits_tile(pl, p.weight->data, nb, c0, cols, b);
        online_lse_kernel<<<(unsigned)nb, kRowThreads, 0, pl.s>>>(b.tile.as<float>(), tile_ld(cols), cols,
                                                                   pl.bias, c0, targets, rows + b0, m, l, ptl);
        L2C_CUDA_CHECK_LAUNCH("online_lse_kernel");
      }
      finish_lse_kernel<<<blocks_for(nb), kElementwiseThreads, 0, pl.s>>>(m, l, ptl, rows + b0, nb, lse,
                                                                          contrib.as<double>() + b0);
      L2C_CUDA_CHECK_LAUNCH("finish_lse_kernel");
    }
  }
  loss_kernel<<<1, kRowThreads, 0, pl.s>>>(contrib.as<double>(), R, p.mean ? 1 : 0,
                                           static_cast<float *>(p.loss->data));
  L2C_CUDA_CHECK_LAUNCH("loss_kernel");
}

void cross_entropy_backward(int device, const CrossEntropyParams &p) {
  DeviceGuard guard(device);
  Plan pl;
  make_plan(device, "cross_entropy_backward", p, pl);
  const int64_t N = pl.N, H = pl.H, V = pl.V, R = pl.R;
  const size_t hes = elem_size(pl.hdt);
  float *dw = p.dweight ? static_cast<float *>(p.dweight->data) : nullptr;
  float *db = p.dbias ? static_cast<float *>(p.dbias->data) : nullptr;
  // Rows without a target get zeros (all rows when none has one); dbias accumulates.
  if (N * H > 0) L2C_CUDA_CHECK(cudaMemsetAsync(p.dhidden->data, 0, (size_t)(N * H) * hes, pl.s));
  if (db && V > 0) L2C_CUDA_CHECK(cudaMemsetAsync(db, 0, (size_t)V * 4, pl.s));
  if (R == 0) {
    if (dw && V * H > 0) L2C_CUDA_CHECK(cudaMemsetAsync(dw, 0, (size_t)(V * H) * 4, pl.s));
    return;
  }
  const float scale = (float)(p.mean ? p.grad_loss / (double)R : p.grad_loss);
  BlockBufs b;
  alloc_block_bufs(pl, true, b);
  const int64_t nch = ceil_div(V, pl.ce), nblocks = ceil_div(R, pl.nb_max);
  Scratch dh_acc(device, (size_t)(pl.nb_max * H) * 4);
  Scratch dh_tmp(device, nch > 1 ? (size_t)(pl.nb_max * H) * 4 : 0);
  Scratch dw_tmp(device, dw && nblocks > 1 ? (size_t)(pl.ce * H) * 4 : 0);
  const int64_t *rows = pl.rows.as<int64_t>();
  const int32_t *targets = static_cast<const int32_t *>(p.targets->data);
  const float *lse = static_cast<const float *>(p.lse->data);
  const int64_t ldh = std::max<int64_t>(1, H);
  float *tile = b.tile.as<float>();
  for (int64_t b0 = 0; b0 < R; b0 += pl.nb_max) {
    const int64_t nb = std::min(pl.nb_max, R - b0);
    const bool first_block = b0 == 0;
    gather_block(pl, p.hidden->data, rows + b0, nb, b);
    for (int64_t c = 0; c < nch; c++) {
      const int64_t c0 = c * pl.ce, cols = std::min(pl.ce, V - c0);
      // The chunk of W in float32 for the dH GEMM (and the logits GEMM when !same).
      const float *wchunk_f32 = nullptr;
      if (b.wf.as()) {
        widen_weight(pl, p.weight->data, c0, cols, b.wf.as<float>());
        wchunk_f32 = b.wf.as<float>();
      } else {
        wchunk_f32 = static_cast<const float *>(p.weight->data) + c0 * H;
      }
      logits_tile(pl, p.weight->data, nb, c0, cols, b);
      const int64_t ld = tile_ld(cols);
      dlogits_kernel<<<(unsigned)nb, kRowThreads, 0, pl.s>>>(tile, ld, cols, pl.bias, c0, targets, rows + b0,
                                                             lse, scale);
      L2C_CUDA_CHECK_LAUNCH("dlogits_kernel");
      if (db) {
        column_sums_kernel<<<blocks_for(cols), kElementwiseThreads, 0, pl.s>>>(db + c0, tile, ld, cols, nb);
        L2C_CUDA_CHECK_LAUNCH("column_sums_kernel");
      }
      if (dw) {  // dW[c0:c0+cols] (+)= dlogits^T [cols, nb] . hidden_block [nb, H]
        float *dst = first_block ? dw + c0 * H : dw_tmp.as<float>();
        gemm(pl, L2C_FLOAT32, cols, H, nb, tile, ld, true, b.h_f32, ldh, false, dst, ldh);
        if (!first_block) add_into(pl, dw + c0 * H, dw_tmp.as<float>(), cols * H);
      }
      // dH_block (+)= dlogits [nb, cols] . W[c0:c0+cols] [cols, H]
      float *dst = c == 0 ? dh_acc.as<float>() : dh_tmp.as<float>();
      gemm(pl, L2C_FLOAT32, nb, H, cols, tile, ld, false, wchunk_f32, ldh, false, dst, ldh);
      if (c > 0) add_into(pl, dh_acc.as<float>(), dh_tmp.as<float>(), nb * H);
    }
    if (nb * H > 0) {
      L2C_FLOAT_DTYPE_SWITCH(pl.hdt, Out, [&] {
        scatter_rows_kernel<Out><<<blocks_for(nb * H), kElementwiseThreads, 0, pl.s>>>(
            static_cast<typename Out::T *>(p.dhidden->data), dh_acc.as<float>(), rows + b0, nb, H);
        L2C_CUDA_CHECK_LAUNCH("scatter_rows_kernel");
      });
    }
  }
}

}  // namespace cuda
}  // namespace l2c
