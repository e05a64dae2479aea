// train_layout.cu: the layout ops of the train family on CUDA (permute, concat / split,
// slice and its backward, ViT patchify / unpatchify), all through one strided-copy kernel,
// the twin of cpu/train_layout.cc's strided_copy.
//
// The host folds the index space first as the CPU does (drops dims of size 1, merges a dim
// into the next inner one when both sides allow), then widens the copy unit when the
// innermost dim is contiguous on both sides: 2- or 4-byte elements are moved as 4, 8 or 16
// byte units when the row length, every other stride and both base pointers allow it
// (concat / slice / [B,S,H,D] <-> [B,H,S,D] permutes move whole rows 16 bytes at a time).
// The kernel is a grid-stride loop over the folded index space in the destination's order
// (innermost dim fastest): each thread turns its flat index into per-dim offsets with one
// division per dim, in 32-bit arithmetic when the whole space has fewer than 2^31 units
// and 64-bit otherwise. Dims are stored innermost first so that the unrolled loop indexes
// the parameter arrays with constants (no local-memory copy of the struct).
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_common.cuh"
#include "train_cuda.h"

namespace l2c {
namespace cuda {
namespace {

// Folded copy geometry, dims innermost first: unit k of dim d at src + k*ss[d], dst + k*sd[d]
// (strides in units).
struct CopyGeom {
  int m;
  int64_t n[L2C_MAX_DIMS], ss[L2C_MAX_DIMS], sd[L2C_MAX_DIMS];
};

template <typename U, typename Idx>
__global__ void __launch_bounds__(kElementwiseThreads)
    strided_copy_kernel(U *__restrict__ dst, const U *__restrict__ src, const CopyGeom g, Idx total) {
  const Idx stride = (Idx)gridDim.x * blockDim.x;
  for (Idx i = (Idx)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    Idx rem = i;
    int64_t os = 0, od = 0;
#pragma unroll
    for (int d = 0; d < L2C_MAX_DIMS; d++) {
      if (d < g.m) {
        const Idx nd = (Idx)g.n[d];
        const Idx q = rem / nd;
        const Idx r = rem - q * nd;
        os += (int64_t)r * g.ss[d];
        od += (int64_t)r * g.sd[d];
        rem = q;
      }
    }
    dst[od] = src[os];
  }
}

template <typename U>
void launch_copy(void *dst, const void *src, const CopyGeom &g, int64_t total, cudaStream_t s) {
  const unsigned blocks = grid_stride_blocks(total);
  // 32-bit indices when i + grid stride cannot wrap.
  const int64_t span = (int64_t)blocks * kElementwiseThreads;
  if (total + span <= (int64_t)INT32_MAX) {
    strided_copy_kernel<U, uint32_t><<<blocks, kElementwiseThreads, 0, s>>>(
        static_cast<U *>(dst), static_cast<const U *>(src), g, (uint32_t)total);
  } else {
    strided_copy_kernel<U, uint64_t><<<blocks, kElementwiseThreads, 0, s>>>(
        static_cast<U *>(dst), static_cast<const U *>(src), g, (uint64_t)total);
  }
  L2C_CUDA_CHECK_LAUNCH("strided_copy_kernel");
}

// dst[i0..] = src[i0..] over the nd-dimensional index space `shape` (outer..inner), both
// strided in elements of es bytes (2 or 4), on device's stream. Semantics of
// cpu::strided_copy.
void strided_copy(int device, void *dst, const int64_t *dst_stride, const void *src,
                  const int64_t *src_stride, const int64_t *shape, int nd, int64_t es) {
  // Fold (outer..inner order, as the CPU).
  int64_t n[L2C_MAX_DIMS], ss[L2C_MAX_DIMS], sd[L2C_MAX_DIMS];
  int m = 0;
  for (int i = 0; i < nd; i++) {
    if (shape[i] == 0) return;
    if (shape[i] == 1) continue;
    n[m] = shape[i];
    ss[m] = src_stride[i];
    sd[m] = dst_stride[i];
    m++;
  }
  int f = 0;
  for (int i = 0; i < m; i++) {
    if (f > 0 && ss[f - 1] == n[i] * ss[i] && sd[f - 1] == n[i] * sd[i]) {
      n[f - 1] *= n[i];
      ss[f - 1] = ss[i];
      sd[f - 1] = sd[i];
    } else {
      n[f] = n[i];
      ss[f] = ss[i];
      sd[f] = sd[i];
      f++;
    }
  }
  m = f;
  cudaStream_t s = stream(device);
  if (m == 0) {  // one element
    L2C_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)es, cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Widen the unit when the innermost dim is contiguous on both sides.
  int64_t unit = es;
  const int in = m - 1;
  if (ss[in] == 1 && sd[in] == 1) {
    for (int64_t w : {16, 8, 4}) {
      if (w <= es) break;
      bool ok = (n[in] * es) % w == 0 && reinterpret_cast<uintptr_t>(dst) % w == 0 &&
                reinterpret_cast<uintptr_t>(src) % w == 0;
      for (int i = 0; ok && i < in; i++) ok = (ss[i] * es) % w == 0 && (sd[i] * es) % w == 0;
      if (ok) {
        const int64_t k = w / es;
        n[in] /= k;
        for (int i = 0; i < in; i++) {
          ss[i] /= k;
          sd[i] /= k;
        }
        unit = w;
        break;
      }
    }
  }
  CopyGeom g{};
  g.m = m;
  int64_t total = 1;
  for (int d = 0; d < m; d++) {  // innermost first
    g.n[d] = n[m - 1 - d];
    g.ss[d] = ss[m - 1 - d];
    g.sd[d] = sd[m - 1 - d];
    total *= g.n[d];
  }
  switch (unit) {
    case 2: launch_copy<uint16_t>(dst, src, g, total, s); break;
    case 4: launch_copy<uint32_t>(dst, src, g, total, s); break;
    case 8: launch_copy<uint2>(dst, src, g, total, s); break;
    case 16: launch_copy<uint4>(dst, src, g, total, s); break;
    default: fail(L2C_INTERNAL, "cuda strided_copy: element size " + std::to_string(unit));
  }
}

void contiguous_strides(const l2c_tensor &t, int64_t *st) {
  int64_t s = 1;
  for (int i = t.ndim - 1; i >= 0; i--) {
    st[i] = s;
    s *= t.shape[i];
  }
}
int64_t esize(const l2c_tensor &t) { return (int64_t)elem_size(t.dtype); }

}  // namespace

void permute(int device, const l2c_tensor &x, const l2c_tensor &out, const int32_t *dims) {
  DeviceGuard guard(device);
  int64_t xs[L2C_MAX_DIMS], os[L2C_MAX_DIMS], ps[L2C_MAX_DIMS];
  contiguous_strides(x, xs);
  contiguous_strides(out, os);
  for (int i = 0; i < out.ndim; i++) ps[i] = xs[dims[i]];
  strided_copy(device, out.data, os, x.data, ps, out.shape, out.ndim, esize(x));
}

void concat(int device, const std::vector<const l2c_tensor *> &parts, const l2c_tensor &whole,
            int dim, bool split) {
  DeviceGuard guard(device);
  int64_t ws[L2C_MAX_DIMS];
  contiguous_strides(whole, ws);
  const int64_t es = esize(whole);
  int64_t off = 0;
  for (const l2c_tensor *p : parts) {
    int64_t ps[L2C_MAX_DIMS];
    contiguous_strides(*p, ps);
    // No pointer arithmetic on an empty whole (its data may be null).
    const bool empty = numel(*p) == 0;
    char *w = empty ? nullptr : static_cast<char *>(whole.data) + off * ws[dim] * es;
    if (!empty) {
      if (split)
        strided_copy(device, p->data, ps, w, ws, p->shape, p->ndim, es);
      else
        strided_copy(device, w, ws, p->data, ps, p->shape, p->ndim, es);
    }
    off += p->shape[dim];
  }
}

void slice_forward(int device, const l2c_tensor &whole, const l2c_tensor &part, int dim,
                   int64_t start) {
  DeviceGuard guard(device);
  if (numel(part) == 0) return;
  int64_t ws[L2C_MAX_DIMS], ps[L2C_MAX_DIMS];
  contiguous_strides(whole, ws);
  contiguous_strides(part, ps);
  const int64_t es = esize(whole);
  const char *w = static_cast<const char *>(whole.data) + start * ws[dim] * es;
  strided_copy(device, part.data, ps, w, ws, part.shape, part.ndim, es);
}

void slice_backward(int device, const l2c_tensor &whole, const l2c_tensor &part, int dim,
                    int64_t start) {
  DeviceGuard guard(device);
  const int64_t nw = numel(whole), np = numel(part), es = esize(whole);
  if (nw == 0) return;
  // Zero everything the part does not cover (all-zero bits are 0 in every dtype), then
  // copy the part in; both on the stream, in order.
  if (np < nw)
    L2C_CUDA_CHECK(cudaMemsetAsync(whole.data, 0, (size_t)(nw * es), stream(device)));
  if (np == 0) return;
  int64_t ws[L2C_MAX_DIMS], ps[L2C_MAX_DIMS];
  contiguous_strides(whole, ws);
  contiguous_strides(part, ps);
  char *w = static_cast<char *>(whole.data) + start * ws[dim] * es;
  strided_copy(device, w, ws, part.data, ps, part.shape, part.ndim, es);
}

void patchify(int device, const l2c_tensor &images, const l2c_tensor &patches, int64_t p,
              bool backward) {
  DeviceGuard guard(device);
  const int64_t B = images.shape[0], C = images.shape[1], H = images.shape[2], W = images.shape[3];
  const int64_t gh = H / p, gw = W / p;
  // Index space in patch order [B, gh, gw, C, py, px].
  const int64_t shape[6] = {B, gh, gw, C, p, p};
  const int64_t is[6] = {C * H * W, p * W, p, H * W, W, 1};
  const int64_t ps[6] = {gh * gw * C * p * p, gw * C * p * p, C * p * p, p * p, p, 1};
  const int64_t es = esize(images);
  if (backward)
    strided_copy(device, images.data, is, patches.data, ps, shape, 6, es);
  else
    strided_copy(device, patches.data, ps, images.data, is, shape, 6, es);
}

}  // namespace cuda
}  // namespace l2c
