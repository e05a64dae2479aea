// api_infonce.cc: the C ABI entries of the infonce kernels (l2c_infonce.h): argument checks
// with typed errors naming the argument (every tensor on a's device: DEVICE_MISMATCH; that
// device present: DEVICE_UNAVAILABLE), then dispatch on the device: cpu:: or cuda::.
#include <cmath>
#include <string>

#include "../cpu/infonce.h"
#include "api_util.h"
#include "backend.h"
#include "infonce_cuda.h"

namespace {

using l2c::fail;
using namespace l2c::api;

// A well-formed tensor on a.device (DEVICE_MISMATCH otherwise).
void check_on(const l2c_tensor *t, const char *what, const l2c_tensor &a, const char *op) {
  std::string w = std::string(op) + ": " + what;
  check_form(t, w.c_str());
  if (!same_device(t->device, a.device))
    fail(L2C_DEVICE_MISMATCH, std::string(op) + ": " + what + " is on " + device_str(t->device) +
                                  " but a is on " + device_str(a.device));
}

// A one-element float32 tensor (any rank whose element count is 1).
void check_scalar(const l2c_tensor &t, const char *what, const char *op) {
  if (t.dtype != L2C_FLOAT32)
    fail(L2C_DTYPE_MISMATCH, std::string(op) + ": " + desc(what, t) + " must be float32");
  if (l2c::numel(t) != 1)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(what, t) + " must hold exactly one element");
}

void check_vec(const l2c_tensor &t, const char *what, int64_t n, const char *op) {
  if (t.dtype != L2C_FLOAT32)
    fail(L2C_DTYPE_MISMATCH, std::string(op) + ": " + desc(what, t) + " must be float32");
  if (t.ndim != 1 || t.shape[0] != n)
    fail(L2C_SHAPE_MISMATCH, std::string(op) + ": " + desc(what, t) + " must be [" + std::to_string(n) + "]");
}

// The scale (or grad_loss): the tensor's element when given, else the finite number.
// On the CPU the element is read here; on a CUDA device *dev gets the tensor's device
// pointer (the kernels read it: no host round trip) and the result is unused.
float read_scalar(double v, const l2c_tensor *t, const l2c_tensor &a, const char *name,
                  const char *op, const float **dev) {
  *dev = nullptr;
  if (t) {
    check_on(t, name, a, op);
    check_scalar(*t, name, op);
    if (t->device.type == L2C_CUDA) {
      *dev = static_cast<const float *>(t->data);
      return 0.0f;
    }
    return *static_cast<const float *>(t->data);
  }
  if (!std::isfinite(v))
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": " + name + " must be finite (got " + std::to_string(v) + ")");
  return (float)v;
}

// a [N,d], b [M,d], same float dtype and device, M >= N, symmetric => M = N.
void check_inputs(const l2c_tensor *a, const l2c_tensor *b, bool symmetric, const char *op) {
  std::string wa = std::string(op) + ": a", wb = std::string(op) + ": b";
  check_form(a, wa.c_str());
  check_on(b, "b", *a, op);
  check_device(a->device, op);
  std::string o = std::string(op) + ": ";
  check_float(*a, wa.c_str());
  if (b->dtype != a->dtype)
    fail(L2C_DTYPE_MISMATCH, o + desc("a", *a) + " and " + desc("b", *b) + " must have the same dtype");
  if (a->ndim != 2 || b->ndim != 2)
    fail(L2C_SHAPE_MISMATCH, o + desc("a", *a) + " and " + desc("b", *b) + " must be 2-D ([N,d] and [M,d])");
  if (a->shape[1] != b->shape[1])
    fail(L2C_SHAPE_MISMATCH, o + desc("a", *a) + " and " + desc("b", *b) + " must have the same d");
  if (b->shape[0] < a->shape[0])
    fail(L2C_SHAPE_MISMATCH, o + desc("a", *a) + ", " + desc("b", *b) +
                                 ": b needs at least as many rows as a (row i's positive is b row i)");
  if (symmetric && b->shape[0] != a->shape[0])
    fail(L2C_SHAPE_MISMATCH, o + desc("a", *a) + ", " + desc("b", *b) +
                                 ": the symmetric loss needs as many rows in b as in a");
}

void check_out(const l2c_tensor *t, const char *what, const l2c_tensor &a, const char *op) {
  check_on(t, what, a, op);
}

}  // namespace

extern "C" {

l2c_status l2c_infonce_forward(const l2c_infonce_args *args) {
  return guarded([&] {
    const char *op = "infonce";
    if (!args) fail(L2C_INVALID_ARGUMENT, "infonce: null arguments");
    const bool sym = args->symmetric != 0;
    check_inputs(args->a, args->b, sym, op);
    const l2c_tensor &a = *args->a, &b = *args->b;
    const int64_t N = a.shape[0], M = b.shape[0];
    check_out(args->loss, "loss", a, op);
    check_scalar(*args->loss, "loss", op);
    check_out(args->lse_rows, "lse_rows", a, op);
    check_vec(*args->lse_rows, "lse_rows", N, op);
    if (sym) {
      if (!args->lse_cols) fail(L2C_INVALID_ARGUMENT, "infonce: lse_cols is required for the symmetric loss");
      check_out(args->lse_cols, "lse_cols", a, op);
      check_vec(*args->lse_cols, "lse_cols", M, op);
    } else if (args->lse_cols) {
      fail(L2C_INVALID_ARGUMENT, "infonce: lse_cols must be null when the loss is not symmetric");
    }
    l2c::cpu::InfonceParams p;
    p.scale = read_scalar(args->scale, args->scale_tensor, a, "scale", op, &p.scale_dev);
    p.a = a.data;
    p.b = b.data;
    p.dtype = a.dtype;
    p.N = N;
    p.M = M;
    p.d = a.shape[1];
    p.symmetric = sym;
    p.loss = static_cast<float *>(args->loss->data);
    p.lse_rows = static_cast<float *>(args->lse_rows->data);
    p.lse_cols = sym ? static_cast<float *>(args->lse_cols->data) : nullptr;
    if (a.device.type == L2C_CUDA)
      l2c::cuda::infonce_forward(a.device.index, p);
    else
      l2c::cpu::infonce_forward(p);
  });
}

l2c_status l2c_infonce_backward(const l2c_infonce_backward_args *args) {
  return guarded([&] {
    const char *op = "infonce_backward";
    if (!args) fail(L2C_INVALID_ARGUMENT, "infonce_backward: null arguments");
    const bool sym = args->symmetric != 0;
    check_inputs(args->a, args->b, sym, op);
    const l2c_tensor &a = *args->a, &b = *args->b;
    const int64_t N = a.shape[0], M = b.shape[0], d = a.shape[1];
    if (!args->lse_rows) fail(L2C_INVALID_ARGUMENT, "infonce_backward: lse_rows is required");
    check_on(args->lse_rows, "lse_rows", a, op);
    check_vec(*args->lse_rows, "lse_rows", N, op);
    if (sym) {
      if (!args->lse_cols)
        fail(L2C_INVALID_ARGUMENT, "infonce_backward: lse_cols is required for the symmetric loss");
      check_on(args->lse_cols, "lse_cols", a, op);
      check_vec(*args->lse_cols, "lse_cols", M, op);
    } else if (args->lse_cols) {
      fail(L2C_INVALID_ARGUMENT, "infonce_backward: lse_cols must be null when the loss is not symmetric");
    }
    check_out(args->da, "da", a, op);
    check_out(args->db, "db", a, op);
    check_out(args->dscale, "dscale", a, op);
    if (args->da->dtype != a.dtype || args->da->ndim != 2 || args->da->shape[0] != N ||
        args->da->shape[1] != d)
      fail(args->da->dtype != a.dtype ? L2C_DTYPE_MISMATCH : L2C_SHAPE_MISMATCH,
           std::string(op) + ": " + desc("da", *args->da) + " must be " + desc("like a", a));
    if (args->db->dtype != b.dtype || args->db->ndim != 2 || args->db->shape[0] != M ||
        args->db->shape[1] != d)
      fail(args->db->dtype != b.dtype ? L2C_DTYPE_MISMATCH : L2C_SHAPE_MISMATCH,
           std::string(op) + ": " + desc("db", *args->db) + " must be " + desc("like b", b));
    check_scalar(*args->dscale, "dscale", op);
    l2c::cpu::InfonceParams p;
    p.scale = read_scalar(args->scale, args->scale_tensor, a, "scale", op, &p.scale_dev);
    p.grad_loss = read_scalar(args->grad_loss, args->grad_loss_tensor, a, "grad_loss", op, &p.grad_loss_dev);
    p.a = a.data;
    p.b = b.data;
    p.dtype = a.dtype;
    p.N = N;
    p.M = M;
    p.d = d;
    p.symmetric = sym;
    p.lse_rows_in = static_cast<const float *>(args->lse_rows->data);
    p.lse_cols_in = sym ? static_cast<const float *>(args->lse_cols->data) : nullptr;
    p.da = args->da->data;
    p.db = args->db->data;
    p.dscale = static_cast<float *>(args->dscale->data);
    if (a.device.type == L2C_CUDA)
      l2c::cuda::infonce_backward(a.device.index, p);
    else
      l2c::cpu::infonce_backward(p);
  });
}

}  // extern "C"
