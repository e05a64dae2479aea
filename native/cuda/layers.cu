// layers.cu: CUDA kernels of the elementwise ops with numpy broadcasting (add, sub, mul,
// scale / broadcast), their backward (mul_backward) and the float32 reductions behind
// sum / mean / sum_to_shape. Twins of cpu/layers.cc; norms, softmax and pooling are in
// layers_norm.cu, activations, rope and dropout in layers_act.cu.
//
// Broadcasting: the host collapses the output's dims into a Plan (core/layers_params.h,
// the CPU's walk); the kernel is a grid-stride loop over the flat output whose index is
// split into the collapsed dims (innermost first) to find each operand's element. One
// collapsed dim (same shapes, or a scalar operand) needs no division. Indices are 32-bit
// when the output has fewer than 2^31 elements (an operand never has more elements than
// the output), else 64-bit.
//
// Reductions (deterministic: no atomics, fixed trees): the dims are collapsed into kept /
// reduced groups (layers::reduce_dims). Stage 1 writes float32 sums per output (or per
// output and chunk): innermost dim reduced -> each output sums runs of L contiguous
// elements: a thread per output for tiny sums, a warp per output up to kWarpMax
// elements, else blocks of 256 over chunks; innermost dim kept -> 32-column tiles, 8 row
// lanes per column, rows split into chunks when there are few tiles. Stage 2 adds an
// output's chunk sums (a warp's tree), times alpha, rounds once to out's dtype.
#include <memory>
#include <string>
#include <type_traits>

#include "layers_common.cuh"
#include "layers_cuda.h"

namespace l2c {
namespace cuda {
namespace layers {

using ::l2c::layers::Dims;
using ::l2c::layers::EW_ADD;
using ::l2c::layers::EW_MUL;
using ::l2c::layers::EW_SCALE;
using ::l2c::layers::EW_SUB;
using ::l2c::layers::Plan;

namespace {

// ---------------------------------------------------------------- elementwise

// The plan for the kernel: dims innermost first (so the unrolled loop indexes statically).
struct EwArgs {
  const void *a;
  const void *b;
  void *o;
  int64_t n;
  int nd;
  int64_t size[L2C_MAX_DIMS];  // innermost first
  int64_t sa[L2C_MAX_DIMS], sb[L2C_MAX_DIMS];
  float alpha;
};

template <int OP>
__device__ __forceinline__ float ew_apply(float x, float y, float alpha) {
  if constexpr (OP == EW_ADD) return x + y;
  else if constexpr (OP == EW_SUB) return x - y;
  else if constexpr (OP == EW_MUL) return x * y;
  else return alpha * x;
}

// o[i] = a[.] (op) b[.] (or alpha * a[.]) over the flat output, a and b of one dtype In.
template <int OP, typename In, typename Out, typename Idx>
__global__ void __launch_bounds__(kElementwiseThreads) binary_kernel(const EwArgs g) {
  using TI = typename In::T;
  using TO = typename Out::T;
  const TI *a = static_cast<const TI *>(g.a);
  const TI *b = static_cast<const TI *>(g.b);
  TO *o = static_cast<TO *>(g.o);
  const Idx n = (Idx)g.n;
  const Idx stride = (Idx)gridDim.x * blockDim.x;
  if (g.nd == 1) {
    const Idx sa = (Idx)g.sa[0], sb = (Idx)g.sb[0];  // 0 or 1
    for (Idx i = (Idx)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
      float x = In::to_f32(a[i * sa]);
      float y = OP == EW_SCALE ? 0.0f : In::to_f32(b[i * sb]);
      o[i] = Out::from_f32(ew_apply<OP>(x, y, g.alpha));
    }
    return;
  }
  for (Idx i = (Idx)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    Idx idx = i, oa = 0, ob = 0;
#pragma unroll
    for (int d = 0; d < L2C_MAX_DIMS; d++) {
      if (d < g.nd) {
        const Idx sz = (Idx)g.size[d];
        const Idx c = idx % sz;
        idx /= sz;
        oa += c * (Idx)g.sa[d];
        if (OP != EW_SCALE) ob += c * (Idx)g.sb[d];
      }
    }
    float x = In::to_f32(a[oa]);
    float y = OP == EW_SCALE ? 0.0f : In::to_f32(b[ob]);
    o[i] = Out::from_f32(ew_apply<OP>(x, y, g.alpha));
  }
}

template <int OP, typename In, typename Out>
void launch_binary(const EwArgs &g, cudaStream_t s) {
  const unsigned blocks = grid_stride_blocks(g.n);
  if (g.n <= (int64_t)0x7fffffff) {
    binary_kernel<OP, In, Out, uint32_t><<<blocks, kElementwiseThreads, 0, s>>>(g);
  } else {
    binary_kernel<OP, In, Out, int64_t><<<blocks, kElementwiseThreads, 0, s>>>(g);
  }
  L2C_CUDA_CHECK_LAUNCH("binary_kernel");
}

// The dtype combinations the callers use: add / sub in one dtype; mul in one dtype or
// into float32 (mul_backward's product); scale from any float dtype to any.
template <typename In, typename Out>
void dispatch_binary(int op, const EwArgs &g, cudaStream_t s) {
  constexpr bool same = std::is_same<In, Out>::value, to32 = std::is_same<Out, F32>::value;
  switch (op) {
    case EW_SCALE: return launch_binary<EW_SCALE, In, Out>(g, s);
    case EW_MUL:
      if constexpr (same || to32) return launch_binary<EW_MUL, In, Out>(g, s);
      break;
    case EW_ADD:
      if constexpr (same) return launch_binary<EW_ADD, In, Out>(g, s);
      break;
    case EW_SUB:
      if constexpr (same) return launch_binary<EW_SUB, In, Out>(g, s);
      break;
    default: break;
  }
  fail(L2C_INTERNAL, "cuda binary: op " + std::to_string(op) + " from " + dtype_name(In::kDtype) + " to " +
                         dtype_name(Out::kDtype) + " is not instantiated");
}

// ---------------------------------------------------------------- reductions

constexpr int kRedThreads = 256;
constexpr int64_t kThreadMax = 16;   // sums of at most this many elements: a thread each
constexpr int64_t kWarpMax = 4096;   // ... up to this many: a warp each; more: blocks
constexpr int64_t kChunkMin = 8192;  // elements per block at least, when an output is split
constexpr int64_t kTargetBlocks = 2048;

// Dims for the kernels, innermost first (as EwArgs).
struct DevDims {
  int n;
  int64_t size[L2C_MAX_DIMS], stride[L2C_MAX_DIMS];
};
DevDims dev_dims(const Dims &d) {
  DevDims r{};
  r.n = d.n;
  for (int i = 0; i < d.n; i++) {
    r.size[i] = d.size[d.n - 1 - i];
    r.stride[i] = d.stride[d.n - 1 - i];
  }
  return r;
}
__device__ __forceinline__ int64_t dims_offset(const DevDims &d, int64_t idx) {
  if (d.n <= 1) return d.n == 0 ? 0 : idx * d.stride[0];  // idx < size[0]: no division
  int64_t off = 0;
#pragma unroll
  for (int k = 0; k < L2C_MAX_DIMS; k++) {
    if (k < d.n) {
      off += (idx % d.size[k]) * d.stride[k];
      idx /= d.size[k];
    }
  }
  return off;
}

// Innermost dim reduced. Output o sums its m = nr * L elements: element e is at
// K.offset(o) + R.offset(e / L) + e % L.
struct InnerArgs {
  const void *x;
  float *part;       // [nk][C]
  int64_t nk, L, m;  // outputs, run length, elements per output
  int64_t C;         // chunks per output (block mode)
  DevDims K, R;
};

template <typename In>
__device__ __forceinline__ float inner_elem(const InnerArgs &g, const typename In::T *x, int64_t base, int64_t e) {
  if (g.R.n == 0) return In::to_f32(x[base + e]);  // one run: contiguous
  const int64_t r = e / g.L, l = e - r * g.L;
  return In::to_f32(x[base + dims_offset(g.R, r) + l]);
}

// A thread per output, the m elements summed in order (m <= kThreadMax).
template <typename In>
__global__ void __launch_bounds__(kRedThreads) sum_inner_thread_kernel(const InnerArgs g) {
  const typename In::T *x = static_cast<const typename In::T *>(g.x);
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < g.nk; o += stride) {
    const int64_t base = dims_offset(g.K, o);
    float s = 0.0f;
    for (int64_t e = 0; e < g.m; e++) s += inner_elem<In>(g, x, base, e);
    g.part[o] = s;
  }
}

// A warp per output: lanes stride over the elements, then the warp's tree.
template <typename In>
__global__ void __launch_bounds__(kRedThreads) sum_inner_warp_kernel(const InnerArgs g) {
  const typename In::T *x = static_cast<const typename In::T *>(g.x);
  const int lane = threadIdx.x & 31;
  const int64_t wpb = blockDim.x / 32;
  for (int64_t o = (int64_t)blockIdx.x * wpb + threadIdx.x / 32; o < g.nk; o += (int64_t)gridDim.x * wpb) {
    const int64_t base = dims_offset(g.K, o);
    float s = 0.0f;
    for (int64_t e = lane; e < g.m; e += 32) s += inner_elem<In>(g, x, base, e);
    s = warp_sum(s);
    if (lane == 0) g.part[o] = s;
  }
}

// A block per (output, chunk): chunk c of C covers elements [m c / C, m (c + 1) / C).
template <typename In>
__global__ void __launch_bounds__(kRedThreads) sum_inner_block_kernel(const InnerArgs g) {
  __shared__ float sh[32];
  const typename In::T *x = static_cast<const typename In::T *>(g.x);
  const int64_t items = g.nk * g.C;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {  // uniform over the block
    const int64_t o = it / g.C, c = it - o * g.C;
    const int64_t e0 = g.m * c / g.C, e1 = g.m * (c + 1) / g.C;
    const int64_t base = dims_offset(g.K, o);
    float s = 0.0f;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) s += inner_elem<In>(g, x, base, e);
    s = block_sum(s, sh);
    if (threadIdx.x == 0) g.part[it] = s;
  }
}

// Innermost dim kept (W contiguous). Output (o, w) sums x[K.offset(o) + w + R.offset(r)]
// over the nr rows r; rows split into C chunks.
struct OuterArgs {
  const void *x;
  float *part;  // [nk * W][C]
  int64_t nk, W, nr, C, tiles;  // tiles = ceil(W / 32)
  DevDims K, R;
};

constexpr int kColX = 32, kColY = 8;

// Block (32, 8): 32 columns of one output row o, 8 lanes over the rows of one chunk;
// the 8 lane sums are added in a fixed tree through shared memory.
template <typename In>
__global__ void __launch_bounds__(kColX * kColY) sum_outer_kernel(const OuterArgs g) {
  __shared__ float sh[kColY][kColX + 1];
  const typename In::T *x = static_cast<const typename In::T *>(g.x);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t items = g.nk * g.tiles * g.C;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {  // uniform over the block
    const int64_t c = it % g.C, tile = (it / g.C) % g.tiles, o = it / (g.C * g.tiles);
    const int64_t w = tile * kColX + tx;
    const int64_t r0 = g.nr * c / g.C, r1 = g.nr * (c + 1) / g.C;
    float s = 0.0f;
    if (w < g.W) {
      const int64_t base = dims_offset(g.K, o) + w;
      for (int64_t r = r0 + ty; r < r1; r += kColY) s += In::to_f32(x[base + dims_offset(g.R, r)]);
    }
    __syncthreads();  // sh is free (previous item read it)
    sh[ty][tx] = s;
    __syncthreads();
    if (ty < 4) sh[ty][tx] += sh[ty + 4][tx];
    __syncthreads();
    if (ty < 2) sh[ty][tx] += sh[ty + 2][tx];
    __syncthreads();
    if (ty == 0 && w < g.W) g.part[(o * g.W + w) * g.C + c] = sh[0][tx] + sh[1][tx];
  }
}

template <typename Out>
__global__ void fill_value_kernel(typename Out::T *__restrict__ out, int64_t n, float v) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = Out::from_f32(v);
}

}  // namespace

// ---------------------------------------------------------------- entries

void binary(int device, int op, const l2c_tensor &a, const l2c_tensor *b, const l2c_tensor &out, float alpha) {
  DeviceGuard guard(device);
  const int64_t total = numel(out);
  if (total == 0) return;
  if (b && b->dtype != a.dtype) fail(L2C_INTERNAL, "cuda binary: a and b of different dtypes");
  const l2c_tensor *ops[2] = {&a, b};
  Plan p = ::l2c::layers::make_plan(out, ops, b ? 2 : 1);
  EwArgs g{};
  g.a = a.data;
  g.b = b ? b->data : nullptr;
  g.o = out.data;
  g.n = total;
  g.nd = p.nd;
  for (int d = 0; d < p.nd; d++) {
    g.size[d] = p.size[p.nd - 1 - d];
    g.sa[d] = p.st[0][p.nd - 1 - d];
    g.sb[d] = p.st[1][p.nd - 1 - d];
  }
  g.alpha = alpha;
  cudaStream_t s = stream(device);
  L2C_FLOAT_DTYPE_SWITCH(a.dtype, In, [&] {
    L2C_FLOAT_DTYPE_SWITCH(out.dtype, Out, [&] { dispatch_binary<In, Out>(op, g, s); });
  });
}

void sum(int device, const l2c_tensor &x, uint32_t mask, double alpha, const l2c_tensor &out) {
  DeviceGuard guard(device);
  const int64_t nout = numel(out);
  if (nout == 0) return;
  cudaStream_t s = stream(device);
  const int64_t nx = numel(x);
  if (nx == 0) {  // a sum over nothing
    const float v = (float)(alpha * 0.0);
    L2C_FLOAT_DTYPE_SWITCH(out.dtype, Out, [&] {
      fill_value_kernel<Out><<<grid_stride_blocks(nout), kElementwiseThreads, 0, s>>>(
          static_cast<typename Out::T *>(out.data), nout, v);
      L2C_CUDA_CHECK_LAUNCH("fill_value_kernel");
    });
    return;
  }
  Dims K, R;
  bool inner_red = false;
  if (!::l2c::layers::reduce_dims(x, mask, K, R, inner_red)) {  // nothing summed: out = alpha * x
    l2c_tensor o = out;
    o.ndim = x.ndim;
    for (int d = 0; d < x.ndim; d++) o.shape[d] = x.shape[d];
    binary(device, EW_SCALE, x, nullptr, o, (float)alpha);
    return;
  }
  const float falpha = (float)alpha;
  int64_t C = 1;
  std::unique_ptr<Scratch> part;
  L2C_FLOAT_DTYPE_SWITCH(x.dtype, In, [&] {
    if (inner_red) {
      InnerArgs g{};
      g.x = x.data;
      g.L = R.size[R.n - 1];
      R.n--;  // R now indexes the runs
      g.m = R.count() * g.L;
      g.nk = K.count();
      g.K = dev_dims(K);
      g.R = dev_dims(R);
      if (g.m <= kThreadMax) {
        part.reset(new Scratch(device, (size_t)g.nk * sizeof(float)));
        g.part = part->f32();
        g.C = 1;
        sum_inner_thread_kernel<In><<<blocks_for(g.nk, kRedThreads), kRedThreads, 0, s>>>(g);
        L2C_CUDA_CHECK_LAUNCH("sum_inner_thread_kernel");
      } else if (g.m <= kWarpMax) {
        part.reset(new Scratch(device, (size_t)g.nk * sizeof(float)));
        g.part = part->f32();
        g.C = 1;
        sum_inner_warp_kernel<In><<<blocks_for(g.nk, kRedThreads / 32), kRedThreads, 0, s>>>(g);
        L2C_CUDA_CHECK_LAUNCH("sum_inner_warp_kernel");
      } else {
        // Few outputs with much work each: C chunks per output, each >= kChunkMin.
        const int64_t by_size = (g.m + kChunkMin - 1) / kChunkMin;
        const int64_t by_blocks = (kTargetBlocks + g.nk - 1) / g.nk;
        C = std::max<int64_t>(1, std::min(by_size, by_blocks));
        g.C = C;
        part.reset(new Scratch(device, (size_t)(g.nk * C) * sizeof(float)));
        g.part = part->f32();
        sum_inner_block_kernel<In><<<blocks_for(g.nk * C, 1), kRedThreads, 0, s>>>(g);
        L2C_CUDA_CHECK_LAUNCH("sum_inner_block_kernel");
      }
    } else {
      OuterArgs g{};
      g.x = x.data;
      g.W = K.size[K.n - 1];
      K.n--;
      g.nk = K.count();
      g.nr = R.count();
      g.tiles = (g.W + kColX - 1) / kColX;
      // Rows split when there are few column tiles: chunks of at least 64 rows.
      const int64_t items = g.nk * g.tiles;
      const int64_t by_rows = std::max<int64_t>(1, g.nr / 64);
      const int64_t by_blocks = (kTargetBlocks + items - 1) / items;
      C = std::max<int64_t>(1, std::min(by_rows, by_blocks));
      g.C = C;
      g.K = dev_dims(K);
      g.R = dev_dims(R);
      part.reset(new Scratch(device, (size_t)(g.nk * g.W * C) * sizeof(float)));
      g.part = part->f32();
      sum_outer_kernel<In><<<blocks_for(items * C, 1), dim3(kColX, kColY), 0, s>>>(g);
      L2C_CUDA_CHECK_LAUNCH("sum_outer_kernel");
    }
  });
  L2C_FLOAT_DTYPE_SWITCH(out.dtype, Out, [&] {
    launch_partials_final<Out>(part->f32(), nout, C, falpha, static_cast<typename Out::T *>(out.data), s);
  });
}

void mul_backward(int device, const l2c_tensor &dy, const l2c_tensor &a, const l2c_tensor &b,
                  const l2c_tensor *da, const l2c_tensor *db) {
  DeviceGuard guard(device);
  const int64_t n = numel(dy);
  const l2c_tensor *targets[2] = {da, db};
  const l2c_tensor *shapes[2] = {&a, &b};
  const l2c_tensor *others[2] = {&b, &a};
  for (int k = 0; k < 2; k++) {
    const l2c_tensor *g = targets[k];
    if (!g || numel(*g) == 0) continue;
    const l2c_tensor &t = *shapes[k];
    if (numel(t) == n) {
      // No broadcast on this operand: g = dy * other (written with dy's shape).
      l2c_tensor o = *g;
      o.ndim = dy.ndim;
      for (int d = 0; d < dy.ndim; d++) o.shape[d] = dy.shape[d];
      binary(device, EW_MUL, dy, others[k], o, 1.0f);
      continue;
    }
    // Broadcast: the float32 product, then summed over the broadcast dims.
    Scratch tmp(device, (size_t)n * sizeof(float));
    l2c_tensor prod = dy;
    prod.data = tmp.get();
    prod.dtype = L2C_FLOAT32;
    binary(device, EW_MUL, dy, others[k], prod, 1.0f);
    uint32_t mask = 0;
    int off = dy.ndim - t.ndim;
    for (int d = 0; d < dy.ndim; d++) {
      int64_t s = d - off >= 0 ? t.shape[d - off] : 1;
      if (s == 1 && dy.shape[d] != 1) mask |= 1u << d;
    }
    sum(device, prod, mask, 1.0, *g);
  }
}

}  // namespace layers
}  // namespace cuda
}  // namespace l2c
