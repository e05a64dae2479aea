// train.cu: the train family's embedding (forward, deterministic backward) and the fused
// AdamW step with global gradient-norm clipping on CUDA; the twins of cpu/train.cc.
//
// embedding forward: the ids are checked first (first_bad_kernel + one read of the result:
//   INVALID_ARGUMENT naming the first bad id, nothing written), then a grid-stride gather
//   of rows in the widest unit (16 / 8 / 4 / 2 bytes) the row length and pointers allow.
// embedding backward: (id, position) pairs sorted by id with CUB's radix sort, which is
//   stable, so each id's positions stay in position order; a boundary kernel records each
//   id's segment [start, end) of the sorted list; then one CTA per vocabulary row sums its
//   segment's dy rows in that order, in float32, each thread owning columns (deterministic,
//   no atomics on floats; the same additions in the same order as the CPU). Unused rows and
//   padding_idx get zeros.
// AdamW: the parameters are cut into units of 2^16 elements (the CPU's units), listed with
//   a descriptor per parameter in device memory. Kernel 1: one CTA per unit sums g^2 in
//   float64 (fixed thread order and tree); kernel 2: one CTA adds the units' sums in a fixed
//   order, takes the square root and computes the clip coefficient and the skip flag on the
//   device; kernel 3: one CTA per unit applies the update (nothing when skipped) with the
//   CPU's float32 operations, each rounded as there (__fmul_rn & co.: no FMA contraction),
//   writing the 16-bit parameter from its float32 master. One read of (norm, skipped) at the
//   end waits for the stream.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_common.cuh"
#include "train_common.cuh"
#include "train_cuda.h"

namespace l2c {
namespace cuda {
namespace {

using train::Scratch;

// ---------------------------------------------------------------- embedding

struct IdOutside {
  const int32_t *ids;
  int64_t V;
  __device__ bool operator()(int64_t i) const { return ids[i] < 0 || ids[i] >= V; }
};

// INVALID_ARGUMENT naming the first id outside [0, V), as cpu::check_ids words it. One
// kernel and one device-to-host read (which waits for the stream).
void check_ids(int device, const char *op, const l2c_tensor &ids, int64_t V) {
  const int64_t n = numel(ids);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  Scratch flag(device, sizeof(unsigned long long));
  L2C_CUDA_CHECK(cudaMemsetAsync(flag.as(), 0xff, sizeof(unsigned long long), s));
  train::first_bad_kernel<<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(
      n, IdOutside{static_cast<const int32_t *>(ids.data), V}, flag.as<unsigned long long>());
  L2C_CUDA_CHECK_LAUNCH("first_bad_kernel (ids)");
  unsigned long long first = 0;
  copy_d2h(device, &first, flag.as(), sizeof first);
  if (first == ~0ull) return;
  const int64_t i = (int64_t)first;
  const int32_t id = train::read_i32(device, ids.data, i);
  fail(L2C_INVALID_ARGUMENT, std::string(op) + ": ids" + train::position(ids, i) + " = " +
                                 std::to_string(id) + " is outside [0, " + std::to_string(V) + ")");
}

// out row i (ru units of U) = weight row ids[i].
template <typename U, typename Idx>
__global__ void __launch_bounds__(kElementwiseThreads)
    gather_rows_kernel(U *__restrict__ out, const U *__restrict__ w, const int32_t *__restrict__ ids,
                       Idx ru, Idx total) {
  const Idx stride = (Idx)gridDim.x * blockDim.x;
  for (Idx i = (Idx)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Idx row = i / ru, k = i - row * ru;
    out[i] = w[(int64_t)ids[row] * (int64_t)ru + (int64_t)k];
  }
}

template <typename U>
void launch_gather(void *out, const void *w, const int32_t *ids, int64_t ru, int64_t n, cudaStream_t s) {
  const int64_t total = ru * n;
  const unsigned blocks = grid_stride_blocks(total);
  if (total + (int64_t)blocks * kElementwiseThreads <= (int64_t)INT32_MAX) {
    gather_rows_kernel<U, uint32_t><<<blocks, kElementwiseThreads, 0, s>>>(
        static_cast<U *>(out), static_cast<const U *>(w), ids, (uint32_t)ru, (uint32_t)total);
  } else {
    gather_rows_kernel<U, uint64_t><<<blocks, kElementwiseThreads, 0, s>>>(
        static_cast<U *>(out), static_cast<const U *>(w), ids, (uint64_t)ru, (uint64_t)total);
  }
  L2C_CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

// ---- backward ----

__global__ void __launch_bounds__(kElementwiseThreads) iota_kernel(int64_t *__restrict__ v, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) v[i] = i;
}

// For the sorted keys: seg[2 key] = first index of key, seg[2 key + 1] = one past its last
// (both stay 0 for a key that does not occur: an empty segment).
__global__ void __launch_bounds__(kElementwiseThreads)
    segment_bounds_kernel(const uint32_t *__restrict__ keys, int64_t n, int64_t *__restrict__ seg) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint32_t k = keys[i];
    if (i == 0 || keys[i - 1] != k) seg[2 * (int64_t)k] = i;
    if (i == n - 1 || keys[i + 1] != k) seg[2 * (int64_t)k + 1] = i + 1;
  }
}

// One CTA per vocabulary row (grid-stride over rows), threads over columns:
// dw[v, c] = sum over j in the row's segment, in order, of dy[pos[j], c].
template <typename In>
__global__ void __launch_bounds__(256)
    embedding_backward_kernel(float *__restrict__ dw, const typename In::T *__restrict__ dy,
                              const int64_t *__restrict__ pos, const int64_t *__restrict__ seg,
                              int64_t V, int64_t H, int64_t padding_idx) {
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const int64_t b = seg[2 * v], e = v == padding_idx ? b : seg[2 * v + 1];
    for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
      float acc = 0.0f;
      for (int64_t j = b; j < e; j++) acc += In::to_f32(dy[pos[j] * H + c]);
      dw[v * H + c] = acc;
    }
  }
}

// ---------------------------------------------------------------- AdamW

constexpr int64_t kUnit = 1 << 16;  // elements per unit (the CPU's kBlock): fixed, deterministic
constexpr int kAdamThreads = 256;
constexpr int kNormThreads = 256;

struct ParamDesc {
  void *param;       // the parameter (float32 when master is null)
  const void *grad;  // of gdt
  float *m, *v;
  float *master;     // null: param is updated in place
  int32_t pdt, gdt;
  int32_t decay;
};
struct UnitDesc {
  int64_t param, begin, end;
};
// What the norm kernels leave on the device for the update kernel and the host.
struct AdamState {
  double norm;
  float clip;
  int32_t skipped;
};
// The float32 constants of one step (PyTorch casts its double scalars the same way).
struct StepConsts {
  float wd_factor, one_minus_b1, b2, one_minus_b2, bc2_sqrt, eps, step_size;
};

// part[u] = sum over unit u of float64(g)^2.
__global__ void __launch_bounds__(kNormThreads)
    sumsq_kernel(const ParamDesc *__restrict__ ps, const UnitDesc *__restrict__ units, int64_t nunits,
                 double *__restrict__ part) {
  __shared__ double smem[32];
  for (int64_t u = blockIdx.x; u < nunits; u += gridDim.x) {
    const UnitDesc un = units[u];
    const ParamDesc p = ps[un.param];
    const l2c_dtype dt = (l2c_dtype)p.gdt;
    double s = 0;
    for (int64_t i = un.begin + threadIdx.x; i < un.end; i += kNormThreads) {
      const double g = (double)train::load_f32(p.grad, dt, i);
      s += g * g;
    }
    s = train::block_reduce<kNormThreads>(s, smem, train::SumOp(), 0.0);
    if (threadIdx.x == 0) part[u] = s;
  }
}

// One CTA: norm = sqrt(sum of part), then the clip coefficient and the skip flag.
__global__ void __launch_bounds__(kNormThreads)
    norm_finish_kernel(const double *__restrict__ part, int64_t nunits, double max_grad_norm,
                       AdamState *__restrict__ st) {
  __shared__ double smem[32];
  double s = 0;
  for (int64_t u = threadIdx.x; u < nunits; u += kNormThreads) s += part[u];
  s = train::block_reduce<kNormThreads>(s, smem, train::SumOp(), 0.0);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    double clip = 1.0;
    if (max_grad_norm > 0) clip = fmin(1.0, max_grad_norm / (norm + 1e-6));
    st->norm = norm;
    st->skipped = isfinite(norm) ? 0 : 1;
    st->clip = (float)clip;
  }
}

__global__ void __launch_bounds__(kAdamThreads)
    adamw_update_kernel(const ParamDesc *__restrict__ ps, const UnitDesc *__restrict__ units,
                        int64_t nunits, const AdamState *__restrict__ st, const StepConsts c) {
  if (st->skipped) return;
  const float clip = st->clip;
  for (int64_t u = blockIdx.x; u < nunits; u += gridDim.x) {
    const UnitDesc un = units[u];
    const ParamDesc p = ps[un.param];
    float *pw = p.master ? p.master : static_cast<float *>(p.param);
    const l2c_dtype gdt = (l2c_dtype)p.gdt, pdt = (l2c_dtype)p.pdt;
    const float wdf = p.decay ? c.wd_factor : 1.0f;
    for (int64_t i = un.begin + threadIdx.x; i < un.end; i += kAdamThreads) {
      // cpu::update_generic's operations, each rounded once, in its order.
      const float gi = __fmul_rn(train::load_f32(p.grad, gdt, i), clip);
      const float pi = __fmul_rn(pw[i], wdf);
      const float mo = p.m[i], vo = p.v[i];
      const float mi = __fadd_rn(mo, __fmul_rn(c.one_minus_b1, __fsub_rn(gi, mo)));
      const float vi = __fadd_rn(__fmul_rn(vo, c.b2), __fmul_rn(__fmul_rn(c.one_minus_b2, gi), gi));
      const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
      const float pn = __fsub_rn(pi, __fdiv_rn(__fmul_rn(c.step_size, mi), den));
      pw[i] = pn;
      p.m[i] = mi;
      p.v[i] = vi;
      if (p.master) train::store_f32(p.param, pdt, i, pn);
    }
  }
}

// The device-side lists of an AdamW step or a norm: descriptors, units, per-unit sums and
// the state, in one allocation.
struct AdamPlan {
  Scratch mem;
  ParamDesc *descs = nullptr;
  UnitDesc *units = nullptr;
  double *part = nullptr;
  AdamState *state = nullptr;
  int64_t nunits = 0;
};

void make_plan(int device, const std::vector<ParamDesc> &descs, const std::vector<int64_t> &sizes,
               AdamPlan &plan) {
  std::vector<UnitDesc> units;
  for (size_t i = 0; i < sizes.size(); i++)
    for (int64_t b = 0; b < sizes[i]; b += kUnit) units.push_back({(int64_t)i, b, std::min(sizes[i], b + kUnit)});
  plan.nunits = (int64_t)units.size();
  const size_t d_bytes = train::align_up(descs.size() * sizeof(ParamDesc), 256);
  const size_t u_bytes = train::align_up(units.size() * sizeof(UnitDesc), 256);
  const size_t p_bytes = train::align_up(units.size() * sizeof(double), 256);
  const size_t s_bytes = train::align_up(sizeof(AdamState), 256);
  plan.mem.reset(device, d_bytes + u_bytes + p_bytes + s_bytes);
  char *base = plan.mem.as<char>();
  plan.descs = reinterpret_cast<ParamDesc *>(base);
  plan.units = reinterpret_cast<UnitDesc *>(base + d_bytes);
  plan.part = reinterpret_cast<double *>(base + d_bytes + u_bytes);
  plan.state = reinterpret_cast<AdamState *>(base + d_bytes + u_bytes + p_bytes);
  // Descriptors and units in one host-to-device copy (from pageable memory: returns once
  // staged, so the host vectors may go).
  std::vector<char> host(d_bytes + u_bytes, 0);
  if (!descs.empty()) std::memcpy(host.data(), descs.data(), descs.size() * sizeof(ParamDesc));
  if (!units.empty()) std::memcpy(host.data() + d_bytes, units.data(), units.size() * sizeof(UnitDesc));
  copy_h2d(device, base, host.data(), host.size());
}

unsigned unit_blocks(int64_t nunits) {
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(nunits, 1 << 20));
}

// Queues the norm kernels (state->norm, clip, skipped on the device).
void launch_norm(const AdamPlan &plan, double max_grad_norm, cudaStream_t s) {
  sumsq_kernel<<<unit_blocks(plan.nunits), kNormThreads, 0, s>>>(plan.descs, plan.units, plan.nunits, plan.part);
  L2C_CUDA_CHECK_LAUNCH("sumsq_kernel");
  norm_finish_kernel<<<1, kNormThreads, 0, s>>>(plan.part, plan.nunits, max_grad_norm, plan.state);
  L2C_CUDA_CHECK_LAUNCH("norm_finish_kernel");
}

}  // namespace

// ---------------------------------------------------------------- entries

void embedding_forward(int device, const l2c_tensor &weight, const l2c_tensor &ids,
                       const l2c_tensor &out) {
  DeviceGuard guard(device);
  const int64_t V = weight.shape[0], H = weight.shape[1], n = numel(ids);
  check_ids(device, "embedding", ids, V);
  const int64_t es = (int64_t)elem_size(weight.dtype), rb = H * es;
  if (rb == 0 || n == 0) return;
  int64_t unit = es;
  for (int64_t w : {16, 8, 4}) {
    if (w <= es) break;
    if (rb % w == 0 && reinterpret_cast<uintptr_t>(weight.data) % w == 0 &&
        reinterpret_cast<uintptr_t>(out.data) % w == 0) {
      unit = w;
      break;
    }
  }
  cudaStream_t s = stream(device);
  const int32_t *id = static_cast<const int32_t *>(ids.data);
  switch (unit) {
    case 2: launch_gather<uint16_t>(out.data, weight.data, id, rb / 2, n, s); break;
    case 4: launch_gather<uint32_t>(out.data, weight.data, id, rb / 4, n, s); break;
    case 8: launch_gather<uint2>(out.data, weight.data, id, rb / 8, n, s); break;
    default: launch_gather<uint4>(out.data, weight.data, id, rb / 16, n, s); break;
  }
}

void embedding_backward(int device, const l2c_tensor &dy, const l2c_tensor &ids,
                        const l2c_tensor &dweight, int64_t padding_idx) {
  DeviceGuard guard(device);
  const int64_t V = dweight.shape[0], H = dweight.shape[1], n = numel(ids);
  check_ids(device, "embedding_backward", ids, V);
  if (V == 0 || H == 0) return;
  cudaStream_t s = stream(device);
  // Sorted (id, position) pairs, then each id's segment; an empty ids list leaves every
  // segment empty (zeros everywhere).
  Scratch seg(device, (size_t)(2 * V) * sizeof(int64_t));
  L2C_CUDA_CHECK(cudaMemsetAsync(seg.as(), 0, (size_t)(2 * V) * sizeof(int64_t), s));
  Scratch pairs, temp;
  // The ids (checked: in [0, V)) as unsigned keys: no sign handling in the sort.
  const uint32_t *keys_in = static_cast<const uint32_t *>(ids.data);
  int64_t *pos_sorted = nullptr;
  if (n > 0) {
    const size_t kb = train::align_up((size_t)n * 4, 256), vb = train::align_up((size_t)n * 8, 256);
    pairs.reset(device, kb + 2 * vb);
    uint32_t *keys_out = pairs.as<uint32_t>();
    int64_t *pos_in = reinterpret_cast<int64_t *>(pairs.as<char>() + kb);
    pos_sorted = reinterpret_cast<int64_t *>(pairs.as<char>() + kb + vb);
    iota_kernel<<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(pos_in, n);
    L2C_CUDA_CHECK_LAUNCH("iota_kernel");
    int end_bit = 1;  // ids are in [0, V): only the low bits of V - 1 vary
    while (end_bit < 31 && ((V - 1) >> end_bit) != 0) end_bit++;
    size_t temp_bytes = 0;
    L2C_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, pos_in,
                                                   pos_sorted, n, 0, end_bit, s));
    temp.reset(device, std::max<size_t>(temp_bytes, 1));
    L2C_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.as(), temp_bytes, keys_in, keys_out, pos_in,
                                                   pos_sorted, n, 0, end_bit, s));
    segment_bounds_kernel<<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(keys_out, n, seg.as<int64_t>());
    L2C_CUDA_CHECK_LAUNCH("segment_bounds_kernel");
  }
  // A warp per row for narrow rows, up to 256 threads for wide ones.
  const int threads = (int)std::min<int64_t>(256, std::max<int64_t>(32, (H + 31) / 32 * 32));
  const unsigned blocks = (unsigned)std::min<int64_t>(V, 1 << 20);
  L2C_FLOAT_DTYPE_SWITCH(dy.dtype, In, [&] {
    embedding_backward_kernel<In><<<blocks, threads, 0, s>>>(
        static_cast<float *>(dweight.data), static_cast<const typename In::T *>(dy.data), pos_sorted,
        seg.as<int64_t>(), V, H, padding_idx);
    L2C_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
  });
}

double grad_norm(int device, const std::vector<const l2c_tensor *> &grads) {
  DeviceGuard guard(device);
  std::vector<ParamDesc> descs;
  std::vector<int64_t> sizes;
  for (const l2c_tensor *g : grads) {
    ParamDesc d{};
    d.grad = g->data;
    d.gdt = g->dtype;
    descs.push_back(d);
    sizes.push_back(numel(*g));
  }
  AdamPlan plan;
  make_plan(device, descs, sizes, plan);
  if (plan.nunits == 0) return 0.0;
  launch_norm(plan, 0.0, stream(device));
  AdamState st;
  copy_d2h(device, &st, plan.state, sizeof st);
  return st.norm;
}

double adamw(int device, const std::vector<AdamWParam> &ps, const AdamWHyper &h, bool *skipped) {
  DeviceGuard guard(device);
  std::vector<ParamDesc> descs;
  std::vector<int64_t> sizes;
  for (const AdamWParam &p : ps) {
    ParamDesc d{};
    d.param = p.param->data;
    d.grad = p.grad->data;
    d.m = static_cast<float *>(p.exp_avg->data);
    d.v = static_cast<float *>(p.exp_avg_sq->data);
    d.master = p.master ? static_cast<float *>(p.master->data) : nullptr;
    d.pdt = p.param->dtype;
    d.gdt = p.grad->dtype;
    d.decay = p.decay ? 1 : 0;
    descs.push_back(d);
    sizes.push_back(numel(*p.param));
  }
  AdamPlan plan;
  make_plan(device, descs, sizes, plan);
  *skipped = false;
  if (plan.nunits == 0) return 0.0;  // nothing to update; the norm of nothing is 0
  StepConsts c;
  c.wd_factor = (float)(1.0 - h.lr * h.weight_decay);
  c.one_minus_b1 = (float)(1.0 - h.beta1);
  c.b2 = (float)h.beta2;
  c.one_minus_b2 = (float)(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, (double)h.step), bc2 = 1.0 - std::pow(h.beta2, (double)h.step);
  c.bc2_sqrt = (float)std::sqrt(bc2);
  c.eps = (float)h.eps;
  c.step_size = (float)(h.lr / bc1);
  cudaStream_t s = stream(device);
  launch_norm(plan, h.max_grad_norm, s);
  adamw_update_kernel<<<unit_blocks(plan.nunits), kAdamThreads, 0, s>>>(plan.descs, plan.units, plan.nunits,
                                                                         plan.state, c);
  L2C_CUDA_CHECK_LAUNCH("adamw_update_kernel");
  AdamState st;
  copy_d2h(device, &st, plan.state, sizeof st);  // waits for the update too
  *skipped = st.skipped != 0;
  return st.norm;
}

}  // namespace cuda
}  // namespace l2c
