// api_layers.cc: the C ABI entries of the layers kernels (l2c_layers.h): argument checks
// with typed errors naming the op and the argument (well-formed descriptors, one device,
// dtypes, shapes, option ranges), then dispatch on the tensors' device to the CPU kernels
// (cpu/layers.h) or their CUDA twins (core/layers_cuda.h; the stub in builds without CUDA).
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "../cpu/layers.h"
#include "api_util.h"
#include "backend.h"
#include "layers_cuda.h"

namespace {

using l2c::fail;
using l2c::numel;
using namespace l2c::api;
namespace K = l2c::cpu::layers;
namespace C = l2c::cuda::layers;

// The CPU kernel fn(args...) or, for tensors on a CUDA device, its twin fn(index, args...).
#define L2C_LAYERS_RUN(dev, fn, ...) \
  ((dev).type == L2C_CUDA ? C::fn((dev).index, __VA_ARGS__) : K::fn(__VA_ARGS__))

struct Arg {
  const l2c_tensor *t;
  const char *name;
};

std::string what(const char *op, const char *name) { return std::string(op) + ": " + name; }

// A required tensor: well formed (INVALID_ARGUMENT for null / malformed).
const l2c_tensor &req(const char *op, const l2c_tensor *t, const char *name) {
  if (!t) fail(L2C_INVALID_ARGUMENT, what(op, name) + ": null tensor");
  check_form(t, what(op, name).c_str());
  return *t;
}
// An optional tensor: null, or well formed.
const l2c_tensor *opt(const char *op, const l2c_tensor *t, const char *name) {
  if (t) check_form(t, what(op, name).c_str());
  return t;
}

// Every given (non-null) tensor on the first one's device (DEVICE_MISMATCH), and that
// device usable (DEVICE_UNAVAILABLE: a CUDA device in a build without CUDA, or one that
// does not exist). Returns it (the CPU when no tensor is given).
l2c_device devices(const char *op, std::initializer_list<Arg> args) {
  const Arg *first = nullptr;
  for (const Arg &a : args) {
    if (!a.t) continue;
    if (!first) { first = &a; continue; }
    if (!same_device(first->t->device, a.t->device))
      fail(L2C_DEVICE_MISMATCH, std::string(op) + ": " + first->name + " is on " + device_str(first->t->device) +
                                    " and " + a.name + " on " + device_str(a.t->device));
  }
  if (!first) return l2c_device{L2C_CPU, 0};
  check_device(first->t->device, op);
  return first->t->device;
}

void is_float(const char *op, const l2c_tensor &t, const char *name) { check_float(t, what(op, name).c_str()); }

void same_dtype(const char *op, const l2c_tensor &a, const char *an, const l2c_tensor &b, const char *bn) {
  if (a.dtype != b.dtype)
    fail(L2C_DTYPE_MISMATCH, std::string(op) + ": " + desc(an, a) + " and " + desc(bn, b) + " must have the same dtype");
}

void is_f32(const char *op, const l2c_tensor &t, const char *name) {
  if (t.dtype != L2C_FLOAT32) fail(L2C_DTYPE_MISMATCH, std::string(op) + ": " + desc(name, t) + " must be float32");
}

bool same_shape(const l2c_tensor &a, const l2c_tensor &b) {
  if (a.ndim != b.ndim) return false;
  for (int d = 0; d < a.ndim; d++)
    if (a.shape[d] != b.shape[d]) return false;
  return true;
}
void need_same_shape(const char *op, const l2c_tensor &a, const char *an, const l2c_tensor &b, const char *bn) {
  if (!same_shape(a, b))
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(an, a) + " and " + desc(bn, b) + " must have the same shape");
}
// Same dtype and shape as the reference.
void like(const char *op, const l2c_tensor &ref, const char *rn, const l2c_tensor &t, const char *tn) {
  same_dtype(op, ref, rn, t, tn);
  need_same_shape(op, ref, rn, t, tn);
}

void need_numel(const char *op, const l2c_tensor &t, const char *name, int64_t n, const char *what_n) {
  if (numel(t) != n)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(name, t) + " must hold " + std::to_string(n) + " elements (" +
                                 what_n + ")");
}

// [D] exactly.
void need_vec(const char *op, const l2c_tensor &t, const char *name, int64_t D) {
  if (t.ndim != 1 || t.shape[0] != D)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(name, t) + " must be [" + std::to_string(D) + "] (the last dim)");
}

// Rows and last dim of a tensor of at least one dim.
void rows_dim(const char *op, const l2c_tensor &x, const char *name, int64_t &rows, int64_t &D) {
  if (x.ndim < 1) fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(name, x) + " needs at least one dim");
  D = x.shape[x.ndim - 1];
  rows = 1;
  for (int d = 0; d < x.ndim - 1; d++) rows *= x.shape[d];
}

void check_eps(const char *op, double eps) {
  if (!(eps >= 0) || !std::isfinite(eps))
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": eps must be a finite number >= 0 (got " + std::to_string(eps) + ")");
}

// t broadcasts to out (numpy rules on trailing dims).
void need_broadcast(const char *op, const l2c_tensor &t, const char *name, const l2c_tensor &out, const char *on) {
  bool ok = t.ndim <= out.ndim;
  for (int d = 0; ok && d < t.ndim; d++) {
    int64_t s = t.shape[t.ndim - 1 - d], o = out.shape[out.ndim - 1 - d];
    if (s != o && s != 1) ok = false;
  }
  if (!ok)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(name, t) + " does not broadcast to " + desc(on, out));
}

// out's shape is exactly the broadcast of a's and b's.
void need_broadcast_of(const char *op, const l2c_tensor &a, const char *an, const l2c_tensor &b, const char *bn,
                       const l2c_tensor &out, const char *on) {
  int nd = a.ndim > b.ndim ? a.ndim : b.ndim;
  bool ok = out.ndim == nd;
  for (int d = 0; ok && d < nd; d++) {
    int64_t sa = d < a.ndim ? a.shape[a.ndim - 1 - d] : 1, sb = d < b.ndim ? b.shape[b.ndim - 1 - d] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(an, a) + " and " + desc(bn, b) + " do not broadcast");
    int64_t s = sa == 1 ? sb : sa;
    if (out.shape[out.ndim - 1 - d] != s) ok = false;
  }
  if (!ok)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(on, out) + " must have the broadcast shape of " + desc(an, a) +
                                 " and " + desc(bn, b));
}

template <class F>
l2c_status entry(const char *op, const void *args, F &&fn) {
  return guarded([&] {
    if (!args) fail(L2C_INVALID_ARGUMENT, std::string(op) + ": null arguments");
    fn();
  });
}

void rope_common(const l2c_rope_args *a, int sign) {
  const char *op = sign > 0 ? "rope" : "rope_backward";
  const char *xn = sign > 0 ? "x" : "dy", *on = sign > 0 ? "out" : "dx";
  const l2c_tensor &x = req(op, a->x, xn), &pos = req(op, a->positions, "positions"), &out = req(op, a->out, on);
  const l2c_device dev = devices(op, {{&x, xn}, {&pos, "positions"}, {&out, on}});
  is_float(op, x, xn);
  like(op, x, xn, out, on);
  if (x.ndim != 4) fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(xn, x) + " must be [B,S,H,D]");
  const int64_t B = x.shape[0], S = x.shape[1], H = x.shape[2], D = x.shape[3];
  if (D % 2 != 0) fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(xn, x) + ": the head dim D must be even");
  if (pos.dtype != L2C_INT32) fail(L2C_DTYPE_MISMATCH, std::string(op) + ": " + desc("positions", pos) + " must be int32");
  bool per_batch = pos.ndim == 2;
  if (!((pos.ndim == 2 && pos.shape[0] == B && pos.shape[1] == S) || (pos.ndim == 1 && pos.shape[0] == S)))
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc("positions", pos) + " must be [B,S] = [" + std::to_string(B) +
                                 "," + std::to_string(S) + "] or [S] = [" + std::to_string(S) + "]");
  auto finite_pos = [&](double v, const char *name) {
    if (!(v > 0) || !std::isfinite(v))
      fail(L2C_INVALID_ARGUMENT, std::string(op) + ": " + name + " must be a finite number > 0 (got " + std::to_string(v) + ")");
  };
  finite_pos(a->theta, "theta");
  if (a->scaling != L2C_ROPE_SCALING_NONE && a->scaling != L2C_ROPE_SCALING_LINEAR && a->scaling != L2C_ROPE_SCALING_LLAMA3)
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": unknown scaling type " + std::to_string(a->scaling));
  if (a->scaling != L2C_ROPE_SCALING_NONE) finite_pos(a->factor, "scaling factor");
  if (a->scaling == L2C_ROPE_SCALING_LLAMA3) {
    finite_pos(a->low_freq_factor, "scaling lowFreqFactor");
    finite_pos(a->high_freq_factor, "scaling highFreqFactor");
    finite_pos(a->original_max_position_embeddings, "scaling originalMaxPositionEmbeddings");
    if (!(a->high_freq_factor > a->low_freq_factor))
      fail(L2C_INVALID_ARGUMENT, std::string(op) + ": llama3 scaling needs lowFreqFactor < highFreqFactor (got " +
                                     std::to_string(a->low_freq_factor) + " and " + std::to_string(a->high_freq_factor) + ")");
  }
  if (numel(x) == 0) return;
  std::vector<double> inv((size_t)(D / 2));
  K::rope_inv_freq(D, a->theta, a->scaling, a->factor, a->low_freq_factor, a->high_freq_factor,
                   a->original_max_position_embeddings, inv.data());
  L2C_LAYERS_RUN(dev, rope, x.data, x.dtype, static_cast<const int32_t *>(pos.data), per_batch, inv.data(), out.data, B, S, H, D, sign);
}

void dropout_common(const l2c_dropout_args *a, bool backward) {
  const char *op = backward ? "dropout_backward" : "dropout";
  const char *xn = backward ? "dy" : "x", *yn = backward ? "dx" : "y";
  const l2c_tensor &x = req(op, a->x, xn), &y = req(op, a->y, yn);
  const l2c_device dev = devices(op, {{&x, xn}, {&y, yn}});
  is_float(op, x, xn);
  like(op, x, xn, y, yn);
  if (!(a->p >= 0.0f && a->p < 1.0f))
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": p must be in [0, 1) (got " + std::to_string(a->p) + ")");
  L2C_LAYERS_RUN(dev, dropout, x.data, x.dtype, y.data, numel(x), a->p, a->seed);
}

}  // namespace

extern "C" {

l2c_status l2c_binary(const l2c_binary_args *args) {
  const char *op = "binary";
  return entry(op, args, [&] {
    const l2c_tensor &a = req(op, args->a, "a"), &b = req(op, args->b, "b"), &out = req(op, args->out, "out");
    if (args->op < L2C_BINARY_ADD || args->op > L2C_BINARY_MUL)
      fail(L2C_INVALID_ARGUMENT, "binary: unknown op " + std::to_string(args->op));
    const char *name = args->op == L2C_BINARY_ADD ? "add" : args->op == L2C_BINARY_SUB ? "sub" : "mul";
    const l2c_device dev = devices(name, {{&a, "a"}, {&b, "b"}, {&out, "out"}});
    is_float(name, a, "a");
    same_dtype(name, a, "a", b, "b");
    same_dtype(name, a, "a", out, "out");
    need_broadcast_of(name, a, "a", b, "b", out, "out");
    L2C_LAYERS_RUN(dev, binary, args->op, a, &b, out, 1.0f);
  });
}

l2c_status l2c_broadcast_scale(const l2c_broadcast_scale_args *args) {
  const char *op = "scale";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &out = req(op, args->out, "out");
    const l2c_device dev = devices(op, {{&x, "x"}, {&out, "out"}});
    is_float(op, x, "x");
    same_dtype(op, x, "x", out, "out");
    need_broadcast(op, x, "x", out, "out");
    if (!std::isfinite(args->alpha))
      fail(L2C_INVALID_ARGUMENT, "scale: the factor must be finite (got " + std::to_string(args->alpha) + ")");
    L2C_LAYERS_RUN(dev, binary, K::EW_SCALE, x, nullptr, out, (float)args->alpha);
  });
}

l2c_status l2c_mul_backward(const l2c_mul_backward_args *args) {
  const char *op = "mul_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &a = req(op, args->a, "a"), &b = req(op, args->b, "b");
    const l2c_tensor *da = opt(op, args->da, "da"), *db = opt(op, args->db, "db");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&a, "a"}, {&b, "b"}, {da, "da"}, {db, "db"}});
    is_float(op, dy, "dy");
    same_dtype(op, dy, "dy", a, "a");
    same_dtype(op, dy, "dy", b, "b");
    need_broadcast_of(op, a, "a", b, "b", dy, "dy");
    if (da) { same_dtype(op, dy, "dy", *da, "da"); need_numel(op, *da, "da", numel(a), "a's size"); }
    if (db) { same_dtype(op, dy, "dy", *db, "db"); need_numel(op, *db, "db", numel(b), "b's size"); }
    L2C_LAYERS_RUN(dev, mul_backward, dy, a, b, da, db);
  });
}

l2c_status l2c_sum(const l2c_sum_args *args) {
  const char *op = "sum";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &out = req(op, args->out, "out");
    const l2c_device dev = devices(op, {{&x, "x"}, {&out, "out"}});
    is_float(op, x, "x");
    is_float(op, out, "out");
    if (x.ndim < 32 && (args->reduce_mask >> x.ndim) != 0)
      fail(L2C_INVALID_ARGUMENT, "sum: reduce_mask names dims past " + desc("x", x) + "'s " + std::to_string(x.ndim));
    if (!std::isfinite(args->alpha) && numel(x) != 0)
      fail(L2C_INVALID_ARGUMENT, "sum: alpha must be finite");
    int64_t kept = 1;
    for (int d = 0; d < x.ndim; d++)
      if (!((args->reduce_mask >> d) & 1u)) kept *= x.shape[d];
    need_numel(op, out, "out", kept, "the kept dims of x");
    L2C_LAYERS_RUN(dev, sum, x, args->reduce_mask, args->alpha, out);
  });
}

l2c_status l2c_rms_norm_forward(const l2c_rms_norm_args *args) {
  const char *op = "rms_norm";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &y = req(op, args->y, "y"), &rstd = req(op, args->rstd, "rstd");
    const l2c_tensor *w = opt(op, args->weight, "weight");
    const l2c_device dev = devices(op, {{&x, "x"}, {w, "weight"}, {&y, "y"}, {&rstd, "rstd"}});
    is_float(op, x, "x");
    like(op, x, "x", y, "y");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    if (w) { is_float(op, *w, "weight"); need_vec(op, *w, "weight", D); }
    is_f32(op, rstd, "rstd");
    need_numel(op, rstd, "rstd", rows, "one per row of x");
    check_eps(op, args->eps);
    L2C_LAYERS_RUN(dev, rms_norm_forward, x.data, x.dtype, w ? w->data : nullptr, w ? w->dtype : L2C_FLOAT32, y.data,
                        static_cast<float *>(rstd.data), rows, D, (float)args->eps);
  });
}

l2c_status l2c_rms_norm_backward(const l2c_rms_norm_backward_args *args) {
  const char *op = "rms_norm_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &x = req(op, args->x, "x"), &rstd = req(op, args->rstd, "rstd"),
                     &dx = req(op, args->dx, "dx");
    const l2c_tensor *w = opt(op, args->weight, "weight"), *dw = opt(op, args->dweight, "dweight");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&x, "x"}, {w, "weight"}, {&rstd, "rstd"}, {&dx, "dx"}, {dw, "dweight"}});
    is_float(op, x, "x");
    like(op, x, "x", dy, "dy");
    like(op, x, "x", dx, "dx");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    if (w) { is_float(op, *w, "weight"); need_vec(op, *w, "weight", D); }
    if (!w != !dw) fail(L2C_INVALID_ARGUMENT, "rms_norm_backward: dweight must be given exactly when weight is");
    if (dw) { is_f32(op, *dw, "dweight"); need_vec(op, *dw, "dweight", D); }
    is_f32(op, rstd, "rstd");
    need_numel(op, rstd, "rstd", rows, "one per row of x");
    L2C_LAYERS_RUN(dev, rms_norm_backward, dy.data, x.data, x.dtype, w ? w->data : nullptr, w ? w->dtype : L2C_FLOAT32,
                         static_cast<const float *>(rstd.data), dx.data, dw ? static_cast<float *>(dw->data) : nullptr,
                         rows, D);
  });
}

l2c_status l2c_layer_norm_forward(const l2c_layer_norm_args *args) {
  const char *op = "layer_norm";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &y = req(op, args->y, "y"), &mean = req(op, args->mean, "mean"),
                     &rstd = req(op, args->rstd, "rstd");
    const l2c_tensor *w = opt(op, args->weight, "weight"), *b = opt(op, args->bias, "bias");
    const l2c_device dev = devices(op, {{&x, "x"}, {w, "weight"}, {b, "bias"}, {&y, "y"}, {&mean, "mean"}, {&rstd, "rstd"}});
    is_float(op, x, "x");
    like(op, x, "x", y, "y");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    if (w) { is_float(op, *w, "weight"); need_vec(op, *w, "weight", D); }
    if (b) { is_float(op, *b, "bias"); need_vec(op, *b, "bias", D); }
    is_f32(op, mean, "mean");
    is_f32(op, rstd, "rstd");
    need_numel(op, mean, "mean", rows, "one per row of x");
    need_numel(op, rstd, "rstd", rows, "one per row of x");
    check_eps(op, args->eps);
    L2C_LAYERS_RUN(dev, layer_norm_forward, x.data, x.dtype, w ? w->data : nullptr, w ? w->dtype : L2C_FLOAT32, b ? b->data : nullptr,
                          b ? b->dtype : L2C_FLOAT32, y.data, static_cast<float *>(mean.data),
                          static_cast<float *>(rstd.data), rows, D, (float)args->eps);
  });
}

l2c_status l2c_layer_norm_backward(const l2c_layer_norm_backward_args *args) {
  const char *op = "layer_norm_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &x = req(op, args->x, "x"), &mean = req(op, args->mean, "mean"),
                     &rstd = req(op, args->rstd, "rstd"), &dx = req(op, args->dx, "dx");
    const l2c_tensor *w = opt(op, args->weight, "weight"), *dw = opt(op, args->dweight, "dweight"),
                     *db = opt(op, args->dbias, "dbias");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&x, "x"}, {w, "weight"}, {&mean, "mean"}, {&rstd, "rstd"}, {&dx, "dx"},
                 {dw, "dweight"}, {db, "dbias"}});
    is_float(op, x, "x");
    like(op, x, "x", dy, "dy");
    like(op, x, "x", dx, "dx");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    if (w) { is_float(op, *w, "weight"); need_vec(op, *w, "weight", D); }
    if (!w != !dw) fail(L2C_INVALID_ARGUMENT, "layer_norm_backward: dweight must be given exactly when weight is");
    if (dw) { is_f32(op, *dw, "dweight"); need_vec(op, *dw, "dweight", D); }
    if (db) { is_f32(op, *db, "dbias"); need_vec(op, *db, "dbias", D); }
    is_f32(op, mean, "mean");
    is_f32(op, rstd, "rstd");
    need_numel(op, mean, "mean", rows, "one per row of x");
    need_numel(op, rstd, "rstd", rows, "one per row of x");
    L2C_LAYERS_RUN(dev, layer_norm_backward, dy.data, x.data, x.dtype, w ? w->data : nullptr, w ? w->dtype : L2C_FLOAT32,
                           static_cast<const float *>(mean.data), static_cast<const float *>(rstd.data), dx.data,
                           dw ? static_cast<float *>(dw->data) : nullptr, db ? static_cast<float *>(db->data) : nullptr,
                           rows, D);
  });
}

l2c_status l2c_l2_normalize_forward(const l2c_l2_normalize_args *args) {
  const char *op = "l2_normalize";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &y = req(op, args->y, "y");
    const l2c_device dev = devices(op, {{&x, "x"}, {&y, "y"}});
    is_float(op, x, "x");
    like(op, x, "x", y, "y");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    check_eps(op, args->eps);
    L2C_LAYERS_RUN(dev, l2_normalize_forward, x.data, x.dtype, y.data, rows, D, (float)args->eps);
  });
}

l2c_status l2c_l2_normalize_backward(const l2c_l2_normalize_backward_args *args) {
  const char *op = "l2_normalize_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &x = req(op, args->x, "x"), &dx = req(op, args->dx, "dx");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&x, "x"}, {&dx, "dx"}});
    is_float(op, x, "x");
    like(op, x, "x", dy, "dy");
    like(op, x, "x", dx, "dx");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    check_eps(op, args->eps);
    L2C_LAYERS_RUN(dev, l2_normalize_backward, dy.data, x.data, x.dtype, dx.data, rows, D, (float)args->eps);
  });
}

l2c_status l2c_softmax_forward(const l2c_softmax_args *args) {
  const char *op = "softmax";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &y = req(op, args->y, "y");
    const l2c_device dev = devices(op, {{&x, "x"}, {&y, "y"}});
    is_float(op, x, "x");
    like(op, x, "x", y, "y");
    int64_t rows, D;
    rows_dim(op, x, "x", rows, D);
    L2C_LAYERS_RUN(dev, softmax_forward, x.data, x.dtype, y.data, rows, D);
  });
}

l2c_status l2c_softmax_backward(const l2c_softmax_backward_args *args) {
  const char *op = "softmax_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &y = req(op, args->y, "y"), &dx = req(op, args->dx, "dx");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&y, "y"}, {&dx, "dx"}});
    is_float(op, y, "y");
    like(op, y, "y", dy, "dy");
    like(op, y, "y", dx, "dx");
    int64_t rows, D;
    rows_dim(op, y, "y", rows, D);
    L2C_LAYERS_RUN(dev, softmax_backward, dy.data, y.data, y.dtype, dx.data, rows, D);
  });
}

l2c_status l2c_rope_forward(const l2c_rope_args *args) {
  return entry("rope", args, [&] { rope_common(args, 1); });
}
l2c_status l2c_rope_backward(const l2c_rope_args *args) {
  return entry("rope_backward", args, [&] { rope_common(args, -1); });
}

static void check_kind(const char *op, int32_t kind) {
  if (kind != L2C_ACT_GELU && kind != L2C_ACT_GELU_TANH && kind != L2C_ACT_QUICK_GELU)
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": unknown activation " + std::to_string(kind));
}

l2c_status l2c_activation_forward(const l2c_activation_args *args) {
  const char *op = "activation";
  return entry(op, args, [&] {
    const l2c_tensor &x = req(op, args->x, "x"), &y = req(op, args->y, "y");
    check_kind(op, args->kind);
    const l2c_device dev = devices(op, {{&x, "x"}, {&y, "y"}});
    is_float(op, x, "x");
    like(op, x, "x", y, "y");
    L2C_LAYERS_RUN(dev, activation_forward, args->kind, x.data, x.dtype, y.data, numel(x));
  });
}

l2c_status l2c_activation_backward(const l2c_activation_backward_args *args) {
  const char *op = "activation_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &x = req(op, args->x, "x"), &dx = req(op, args->dx, "dx");
    check_kind(op, args->kind);
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&x, "x"}, {&dx, "dx"}});
    is_float(op, x, "x");
    like(op, x, "x", dy, "dy");
    like(op, x, "x", dx, "dx");
    L2C_LAYERS_RUN(dev, activation_backward, args->kind, dy.data, x.data, x.dtype, dx.data, numel(x));
  });
}

l2c_status l2c_swiglu_forward(const l2c_swiglu_args *args) {
  const char *op = "swiglu";
  return entry(op, args, [&] {
    const l2c_tensor &g = req(op, args->gate, "gate"), &u = req(op, args->up, "up"), &o = req(op, args->out, "out");
    const l2c_device dev = devices(op, {{&g, "gate"}, {&u, "up"}, {&o, "out"}});
    is_float(op, g, "gate");
    like(op, g, "gate", u, "up");
    like(op, g, "gate", o, "out");
    L2C_LAYERS_RUN(dev, swiglu_forward, g.data, u.data, g.dtype, o.data, numel(g));
  });
}

l2c_status l2c_swiglu_backward(const l2c_swiglu_backward_args *args) {
  const char *op = "swiglu_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &g = req(op, args->gate, "gate"), &u = req(op, args->up, "up"),
                     &dg = req(op, args->dgate, "dgate"), &du = req(op, args->dup, "dup");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&g, "gate"}, {&u, "up"}, {&dg, "dgate"}, {&du, "dup"}});
    is_float(op, g, "gate");
    like(op, g, "gate", u, "up");
    like(op, g, "gate", dy, "dy");
    like(op, g, "gate", dg, "dgate");
    like(op, g, "gate", du, "dup");
    L2C_LAYERS_RUN(dev, swiglu_backward, dy.data, g.data, u.data, g.dtype, dg.data, du.data, numel(g));
  });
}

l2c_status l2c_dropout_forward(const l2c_dropout_args *args) {
  return entry("dropout", args, [&] { dropout_common(args, false); });
}
l2c_status l2c_dropout_backward(const l2c_dropout_args *args) {
  return entry("dropout_backward", args, [&] { dropout_common(args, true); });
}

static void pool_mask(const char *op, const l2c_tensor &mask, int64_t B, int64_t S) {
  if (mask.dtype != L2C_INT32) is_float(op, mask, "mask");
  if (mask.ndim != 2 || mask.shape[0] != B || mask.shape[1] != S)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc("mask", mask) + " must be [B,S] = [" + std::to_string(B) + "," +
                                 std::to_string(S) + "]");
}

l2c_status l2c_masked_mean_pool_forward(const l2c_masked_mean_pool_args *args) {
  const char *op = "masked_mean_pool";
  return entry(op, args, [&] {
    const l2c_tensor &h = req(op, args->hidden, "hidden"), &m = req(op, args->mask, "mask"), &o = req(op, args->out, "out");
    const l2c_device dev = devices(op, {{&h, "hidden"}, {&m, "mask"}, {&o, "out"}});
    is_float(op, h, "hidden");
    same_dtype(op, h, "hidden", o, "out");
    if (h.ndim != 3) fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc("hidden", h) + " must be [B,S,H]");
    const int64_t B = h.shape[0], S = h.shape[1], H = h.shape[2];
    pool_mask(op, m, B, S);
    if (o.ndim != 2 || o.shape[0] != B || o.shape[1] != H)
      fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc("out", o) + " must be [B,H] = [" + std::to_string(B) + "," +
                                   std::to_string(H) + "]");
    L2C_LAYERS_RUN(dev, masked_mean_pool_forward, h.data, h.dtype, m.data, m.dtype, o.data, B, S, H);
  });
}

l2c_status l2c_masked_mean_pool_backward(const l2c_masked_mean_pool_backward_args *args) {
  const char *op = "masked_mean_pool_backward";
  return entry(op, args, [&] {
    const l2c_tensor &dy = req(op, args->dy, "dy"), &m = req(op, args->mask, "mask"), &dh = req(op, args->dhidden, "dhidden");
    const l2c_device dev = devices(op, {{&dy, "dy"}, {&m, "mask"}, {&dh, "dhidden"}});
    is_float(op, dy, "dy");
    same_dtype(op, dy, "dy", dh, "dhidden");
    if (dh.ndim != 3) fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc("dhidden", dh) + " must be [B,S,H]");
    const int64_t B = dh.shape[0], S = dh.shape[1], H = dh.shape[2];
    pool_mask(op, m, B, S);
    if (dy.ndim != 2 || dy.shape[0] != B || dy.shape[1] != H)
      fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc("dy", dy) + " must be [B,H] = [" + std::to_string(B) + "," +
                                   std::to_string(H) + "]");
    L2C_LAYERS_RUN(dev, masked_mean_pool_backward, dy.data, dy.dtype, m.data, m.dtype, dh.data, B, S, H);
  });
}

}  // extern "C"
