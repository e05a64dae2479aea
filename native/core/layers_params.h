// layers_params.h: what the CPU and CUDA kernels of the layers family share on the host:
// the elementwise op codes, the broadcast walk (Plan: the output's dims collapsed, each
// operand's element stride per dim) and the dims of a reduction (Dims: sizes, strides,
// the offset of a linear index). Plain C++, no CPU or CUDA specifics: included by
// cpu/layers*.cc and cuda/layers*.cu alike.
#pragma once
#include <cstdint>

#include "common.h"

namespace l2c {
namespace layers {

// Elementwise op codes of binary(): the three l2c_binary_op values, plus SCALE
// (out = alpha * a, b absent).
enum EwOp { EW_ADD = 0, EW_SUB = 1, EW_MUL = 2, EW_SCALE = 3 };

// The broadcast walk: nd collapsed dims of the output (outermost first), each operand's
// element stride per dim (0 = broadcast). Size-1 dims are dropped and neighbours merged
// where every operand is contiguous across them, so [N,H] + [H] is N rows of H with b's
// stride 1 in the inner dim and 0 in the outer. The innermost stride of an operand is
// always 0 or 1 (the dims inside it are size-1 in the output, so in the operand too).
// nd >= 1 (a single dim of size 1 when every dim of the output is 1).
struct Plan {
  int nd = 0;
  int64_t size[L2C_MAX_DIMS];
  int64_t st[2][L2C_MAX_DIMS];
};

// The plan of out = f(ops[0], ops[1]) (nops 1 or 2), every operand broadcasting to out.
inline Plan make_plan(const l2c_tensor &out, const l2c_tensor *const *ops, int nops) {
  Plan p;
  int n = out.ndim;
  int64_t tmp_size[L2C_MAX_DIMS], tmp_st[2][L2C_MAX_DIMS];
  int64_t cstride[2] = {1, 1};
  // Strides of each operand, innermost first.
  int k = 0;
  int64_t osz[L2C_MAX_DIMS], ost[2][L2C_MAX_DIMS];
  for (int d = n - 1; d >= 0; d--) {
    osz[d] = out.shape[d];
    for (int j = 0; j < nops; j++) {
      int od = d - (n - ops[j]->ndim);
      int64_t s = od >= 0 ? ops[j]->shape[od] : 1;
      ost[j][d] = (s == 1) ? 0 : cstride[j];
      cstride[j] *= s;
    }
  }
  for (int d = 0; d < n; d++) {
    if (osz[d] == 1) continue;
    tmp_size[k] = osz[d];
    for (int j = 0; j < 2; j++) tmp_st[j][k] = j < nops ? ost[j][d] : 0;
    k++;
  }
  if (k == 0) {
    p.nd = 1;
    p.size[0] = 1;
    p.st[0][0] = p.st[1][0] = 0;
    return p;
  }
  // Merge dim i into its outer neighbour when every operand is contiguous across them.
  p.nd = 1;
  p.size[0] = tmp_size[0];
  p.st[0][0] = tmp_st[0][0];
  p.st[1][0] = tmp_st[1][0];
  for (int i = 1; i < k; i++) {
    int q = p.nd - 1;
    bool merge = true;
    for (int j = 0; j < 2; j++)
      if (p.st[j][q] != tmp_st[j][i] * tmp_size[i]) merge = false;
    if (merge) {
      p.size[q] *= tmp_size[i];
      p.st[0][q] = tmp_st[0][i];
      p.st[1][q] = tmp_st[1][i];
    } else {
      p.size[p.nd] = tmp_size[i];
      p.st[0][p.nd] = tmp_st[0][i];
      p.st[1][p.nd] = tmp_st[1][i];
      p.nd++;
    }
  }
  return p;
}

// A set of dims (outermost first) with x's element strides; offset(i) of a linear index.
struct Dims {
  int n = 0;
  int64_t size[L2C_MAX_DIMS], stride[L2C_MAX_DIMS];
  int64_t count() const {
    int64_t c = 1;
    for (int d = 0; d < n; d++) c *= size[d];
    return c;
  }
  int64_t offset(int64_t idx) const {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
      off += (idx % size[d]) * stride[d];
      idx /= size[d];
    }
    return off;
  }
};

// The dims of a reduction of x over the dims in mask (bit d = dim d): size-1 dims
// dropped, neighbours of the same kind (kept / reduced) merged. kept and red get the
// groups in order (outermost first) with x's element strides; inner_reduced tells
// whether the innermost group is a reduced one. Returns false when nothing is reduced
// (no reduced dim of size > 1).
inline bool reduce_dims(const l2c_tensor &x, uint32_t mask, Dims &kept, Dims &red, bool &inner_reduced) {
  int64_t sizes[L2C_MAX_DIMS], strides[L2C_MAX_DIMS];
  bool is_red[L2C_MAX_DIMS];
  int n = 0;
  int64_t stride = 1;
  int64_t xs[L2C_MAX_DIMS];
  for (int d = x.ndim - 1; d >= 0; d--) { xs[d] = stride; stride *= x.shape[d]; }
  for (int d = 0; d < x.ndim; d++) {
    if (x.shape[d] == 1) continue;
    bool r = (mask >> d) & 1u;
    if (n > 0 && is_red[n - 1] == r) {
      sizes[n - 1] *= x.shape[d];
      strides[n - 1] = xs[d];
    } else {
      sizes[n] = x.shape[d];
      strides[n] = xs[d];
      is_red[n] = r;
      n++;
    }
  }
  kept = Dims();
  red = Dims();
  bool any = false;
  for (int i = 0; i < n; i++) {
    Dims &t = is_red[i] ? red : kept;
    t.size[t.n] = sizes[i];
    t.stride[t.n] = strides[i];
    t.n++;
    any |= is_red[i];
  }
  inner_reduced = n > 0 && is_red[n - 1];
  return any;
}

}  // namespace layers
}  // namespace l2c
