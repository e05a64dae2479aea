// api_lora.cc: the C ABI entries of the lora kernels (l2c_lora.h): argument checks with
// typed errors naming the argument, then dispatch on the tensors' device (one device for
// all, DEVICE_MISMATCH otherwise): CPU -> cpu/lora.cc, CUDA -> cuda/lora.cu.
#include <cmath>
#include <string>

#include "../cpu/lora.h"
#include "api_util.h"
#include "backend.h"
#include "lora_cuda.h"

namespace {

using l2c::fail;
using namespace l2c::api;

// The tensors of one call: (name, pointer), null entries skipped.
struct Named {
  const char *name;
  const l2c_tensor *t;
};

// Checks every tensor's form, that all share one existing device (returned), and their
// float dtypes.
template <size_t K>
l2c_device check_all(const char *op, const Named (&ts)[K]) {
  const l2c_tensor *first = nullptr;
  const char *first_name = nullptr;
  for (const Named &n : ts) {
    if (!n.t) continue;
    check_form(n.t, (std::string(op) + ": " + n.name).c_str());
    if (!first) {
      first = n.t;
      first_name = n.name;
    } else if (!same_device(first->device, n.t->device)) {
      fail(L2C_DEVICE_MISMATCH, std::string(op) + ": " + first_name + " is on " +
                                    device_str(first->device) + " and " + n.name + " on " +
                                    device_str(n.t->device));
    }
  }
  check_device(first->device, op);
  for (const Named &n : ts)
    if (n.t) check_float(*n.t, (std::string(op) + ": " + n.name).c_str());
  return first->device;
}

bool on_cuda(const l2c_device &d) { return d.type == L2C_CUDA; }

void same_dtype(const char *op, const char *an, const l2c_tensor &a, const char *bn,
                const l2c_tensor &b) {
  if (a.dtype != b.dtype)
    fail(L2C_DTYPE_MISMATCH, std::string(op) + ": " + desc(an, a) + " and " + desc(bn, b) +
                                 " must have the same dtype");
}

void shape_fail(const char *op, const std::string &msg) {
  fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + msg);
}

void check_2d(const char *op, const char *name, const l2c_tensor &t, int64_t r0, int64_t r1,
              const char *want) {
  if (t.ndim != 2 || t.shape[0] != r0 || t.shape[1] != r1)
    shape_fail(op, desc(name, t) + " must be " + want + " = [" + std::to_string(r0) + "," +
                       std::to_string(r1) + "]");
}

// weight [out, in], lora_a [r, in], lora_b [out, r]: returns out, r (in given).
void check_adapter(const char *op, const l2c_tensor &w, const l2c_tensor &a, const l2c_tensor &b,
                   int64_t in, int64_t &out, int64_t &r) {
  if (w.ndim != 2) shape_fail(op, desc("weight", w) + " must be 2-D [out, in]");
  if (w.shape[1] != in)
    shape_fail(op, desc("weight", w) + " must have in = " + std::to_string(in) + " columns");
  out = w.shape[0];
  if (a.ndim != 2 || a.shape[1] != in)
    shape_fail(op, desc("lora_a", a) + " must be [r, in] with in = " + std::to_string(in));
  r = a.shape[0];
  check_2d(op, "lora_b", b, out, r, "[out, r]");
  same_dtype(op, "lora_a", a, "lora_b", b);
}

// x [..., in]: N = product of the leading dims. other must be [..., last].
int64_t rows_of(const l2c_tensor &x) {
  int64_t n = 1;
  for (int i = 0; i + 1 < x.ndim; i++) n *= x.shape[i];
  return n;
}
void check_like_x(const char *op, const char *xn, const l2c_tensor &x, const char *name,
                  const l2c_tensor &t, int64_t last) {
  bool ok = t.ndim == x.ndim;
  for (int i = 0; ok && i + 1 < x.ndim; i++) ok = t.shape[i] == x.shape[i];
  if (ok) ok = t.shape[t.ndim - 1] == last;
  if (!ok) {
    std::string want = "[";
    for (int i = 0; i + 1 < x.ndim; i++) want += std::to_string(x.shape[i]) + ",";
    want += std::to_string(last) + "]";
    shape_fail(op, desc(name, t) + " must be " + want + " (" + xn + "'s leading dims)");
  }
}

void check_options(const char *op, float scale, float p) {
  if (!std::isfinite(scale))
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": scale must be finite (got " +
                                   std::to_string(scale) + ")");
  if (!(p >= 0.0f && p < 1.0f))
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": dropout p must be in [0, 1) (got " +
                                   std::to_string(p) + ")");
}

l2c_status merge(const l2c_lora_merge_args *args, int sign) {
  const char *op = sign > 0 ? "lora_merge" : "lora_unmerge";
  return guarded([&] {
    if (!args) fail(L2C_INVALID_ARGUMENT, std::string(op) + ": null arguments");
    if (!args->weight || !args->lora_a || !args->lora_b)
      fail(L2C_INVALID_ARGUMENT, std::string(op) + ": weight, lora_a and lora_b are required");
    const l2c_device dev =
        check_all(op, {{"weight", args->weight}, {"lora_a", args->lora_a}, {"lora_b", args->lora_b}});
    const l2c_tensor &w = *args->weight, &a = *args->lora_a, &b = *args->lora_b;
    if (w.ndim != 2) shape_fail(op, desc("weight", w) + " must be 2-D [out, in]");
    int64_t out, r;
    check_adapter(op, w, a, b, w.shape[1], out, r);
    check_options(op, args->scale, 0.0f);
    l2c::LoraDims d;
    d.n = 0;
    d.in = w.shape[1];
    d.out = out;
    d.r = r;
    d.dt = w.dtype;
    d.adt = a.dtype;
    d.scale = args->scale;
    if (on_cuda(dev))
      l2c::cuda::lora_merge(dev.index, d, w.data, a.data, b.data, sign);
    else
      l2c::cpu::lora_merge(d, w.data, a.data, b.data, sign);
  });
}

}  // namespace

extern "C" {

l2c_status l2c_lora_forward(const l2c_lora_forward_args *args) {
  const char *op = "lora_forward";
  return guarded([&] {
    if (!args) fail(L2C_INVALID_ARGUMENT, "lora_forward: null arguments");
    if (!args->x || !args->weight || !args->lora_a || !args->lora_b || !args->y)
      fail(L2C_INVALID_ARGUMENT, "lora_forward: x, weight, lora_a, lora_b and y are required");
    const l2c_device dev = check_all(op, {{"x", args->x}, {"weight", args->weight}, {"lora_a", args->lora_a},
                                          {"lora_b", args->lora_b}, {"bias", args->bias}, {"y", args->y}});
    const l2c_tensor &x = *args->x, &w = *args->weight, &a = *args->lora_a, &b = *args->lora_b,
                     &y = *args->y;
    same_dtype(op, "x", x, "weight", w);
    same_dtype(op, "x", x, "y", y);
    if (args->bias) same_dtype(op, "x", x, "bias", *args->bias);
    if (x.ndim < 1) shape_fail(op, desc("x", x) + " must have at least one dim ([..., in])");
    const int64_t in = x.shape[x.ndim - 1];
    int64_t out, r;
    check_adapter(op, w, a, b, in, out, r);
    if (args->bias && (args->bias->ndim != 1 || args->bias->shape[0] != out))
      shape_fail(op, desc("bias", *args->bias) + " must be [" + std::to_string(out) + "]");
    check_like_x(op, "x", x, "y", y, out);
    check_options(op, args->scale, args->dropout_p);
    l2c::LoraDims d;
    d.n = rows_of(x);
    d.in = in;
    d.out = out;
    d.r = r;
    d.dt = x.dtype;
    d.adt = a.dtype;
    d.scale = args->scale;
    d.p = args->dropout_p;
    d.seed = args->seed;
    const void *bias = args->bias ? args->bias->data : nullptr;
    if (on_cuda(dev))
      l2c::cuda::lora_forward(dev.index, d, x.data, w.data, a.data, b.data, bias, y.data);
    else
      l2c::cpu::lora_forward(d, x.data, w.data, a.data, b.data, bias, y.data);
  });
}

l2c_status l2c_lora_backward(const l2c_lora_backward_args *args) {
  const char *op = "lora_backward";
  return guarded([&] {
    if (!args) fail(L2C_INVALID_ARGUMENT, "lora_backward: null arguments");
    if (!args->dy || !args->x || !args->weight || !args->lora_a || !args->lora_b || !args->d_a ||
        !args->d_b)
      fail(L2C_INVALID_ARGUMENT,
           "lora_backward: dy, x, weight, lora_a, lora_b, d_a and d_b are required");
    const l2c_device dev = check_all(op, {{"dy", args->dy}, {"x", args->x}, {"weight", args->weight},
                                          {"lora_a", args->lora_a}, {"lora_b", args->lora_b}, {"dx", args->dx},
                                          {"d_a", args->d_a}, {"d_b", args->d_b}});
    const l2c_tensor &dy = *args->dy, &x = *args->x, &w = *args->weight, &a = *args->lora_a,
                     &b = *args->lora_b, &da = *args->d_a, &db = *args->d_b;
    same_dtype(op, "x", x, "weight", w);
    same_dtype(op, "x", x, "dy", dy);
    if (args->dx) same_dtype(op, "x", x, "dx", *args->dx);
    same_dtype(op, "lora_a", a, "d_a", da);
    same_dtype(op, "lora_a", a, "d_b", db);
    if (x.ndim < 1) shape_fail(op, desc("x", x) + " must have at least one dim ([..., in])");
    const int64_t in = x.shape[x.ndim - 1];
    int64_t out, r;
    check_adapter(op, w, a, b, in, out, r);
    check_like_x(op, "x", x, "dy", dy, out);
    if (args->dx) check_like_x(op, "x", x, "dx", *args->dx, in);
    check_2d(op, "d_a", da, r, in, "[r, in]");
    check_2d(op, "d_b", db, out, r, "[out, r]");
    check_options(op, args->scale, args->dropout_p);
    l2c::LoraDims d;
    d.n = rows_of(x);
    d.in = in;
    d.out = out;
    d.r = r;
    d.dt = x.dtype;
    d.adt = a.dtype;
    d.scale = args->scale;
    d.p = args->dropout_p;
    d.seed = args->seed;
    void *dx = args->dx ? args->dx->data : nullptr;
    if (on_cuda(dev))
      l2c::cuda::lora_backward(dev.index, d, dy.data, x.data, w.data, a.data, b.data, dx, da.data, db.data);
    else
      l2c::cpu::lora_backward(d, dy.data, x.data, w.data, a.data, b.data, dx, da.data, db.data);
  });
}

l2c_status l2c_lora_merge(const l2c_lora_merge_args *args) { return merge(args, +1); }
l2c_status l2c_lora_unmerge(const l2c_lora_merge_args *args) { return merge(args, -1); }

}  // extern "C"
