// api_attention.cc: the C ABI entries of the attention kernels (l2c_attention.h): argument checks with
// typed errors naming the argument, then dispatch to the backend.
#include <cmath>
#include <string>

#include "../cpu/attention.h"
#include "api_util.h"
#include "attention_cuda.h"
#include "backend.h"

namespace {

using l2c::fail;
using namespace l2c::api;

std::string dims(const l2c_tensor &t) { return l2c::shape_str(t); }

bool same_shape(const l2c_tensor &a, const l2c_tensor &b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

// Checks q, k, v, the mask, scale and causal (shared by both directions) and fills p.
// `op` prefixes messages ("attention_forward"). The device (CPU or an existing CUDA
// device) is q's; every other tensor must be on it.
void check_inputs(const char *op, const l2c_tensor *q, const l2c_tensor *k, const l2c_tensor *v,
                  const l2c_tensor *mask, double scale, l2c::AttentionParams &p) {
  const std::string o(op);
  check_form(q, (o + ": q").c_str());
  check_form(k, (o + ": k").c_str());
  check_form(v, (o + ": v").c_str());
  if (mask) check_form(mask, (o + ": key_padding_mask").c_str());
  for (const l2c_tensor *t : {k, v, mask})
    if (t && !same_device(q->device, t->device))
      fail(L2C_DEVICE_MISMATCH, o + ": q on " + device_str(q->device) + ", " +
                                    (t == k ? "k" : t == v ? "v" : "key_padding_mask") + " on " +
                                    device_str(t->device));
  check_device(q->device, op);
  check_float(*q, (o + ": q").c_str());
  if (k->dtype != q->dtype || v->dtype != q->dtype)
    fail(L2C_DTYPE_MISMATCH, o + ": " + desc("q", *q) + ", " + desc("k", *k) + ", " + desc("v", *v) +
                                 " must have the same dtype");
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("q", *q) + ", " + desc("k", *k) + ", " + desc("v", *v) +
                                 " must be 4-D: q [B,S,Hq,D], k and v [B,S,Hkv,D]");
  const int64_t B = q->shape[0], S = q->shape[1], Hq = q->shape[2], D = q->shape[3];
  if (!same_shape(*k, *v) || k->shape[0] != B || k->shape[1] != S || k->shape[3] != D)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("q", *q) + ", " + desc("k", *k) + ", " + desc("v", *v) +
                                 ": k and v must be [B,S,Hkv,D] with q's B, S and D");
  const int64_t Hkv = k->shape[2];
  if (Hkv < 1 || Hq % Hkv != 0)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("q", *q) + ", " + desc("k", *k) +
                                 ": the query heads (" + std::to_string(Hq) +
                                 ") must be a multiple of the key/value heads (" +
                                 std::to_string(Hkv) + ")");
  if (D < 1 || D > 256)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("q", *q) + ": head dim " + std::to_string(D) +
                                 " outside [1, 256]");
  if (mask) {
    if (mask->dtype != L2C_INT32)
      fail(L2C_DTYPE_MISMATCH, o + ": " + desc("key_padding_mask", *mask) + " must be int32");
    if (mask->ndim != 2 || mask->shape[0] != B || mask->shape[1] != S)
      fail(L2C_SHAPE_MISMATCH, o + ": " + desc("key_padding_mask", *mask) + " must be [" +
                                   std::to_string(B) + "," + std::to_string(S) + "] (q is " +
                                   dims(*q) + ")");
  }
  if (!std::isfinite(scale))
    fail(L2C_INVALID_ARGUMENT, o + ": scale must be finite (got " + std::to_string(scale) + ")");
  // Offsets are computed in int64 elements: keep every tensor well inside that.
  const double total = (double)B * S * (double)(Hq + Hkv) * D;
  if (total > 4e18 / 4)
    fail(L2C_INVALID_ARGUMENT, o + ": tensors too large");
  p.q = q->data;
  p.k = k->data;
  p.v = v->data;
  p.mask = mask ? static_cast<const int32_t *>(mask->data) : nullptr;
  p.dt = q->dtype;
  p.B = B;
  p.S = S;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.D = D;
  p.scale = (float)scale;
  if (!std::isfinite(p.scale))
    fail(L2C_INVALID_ARGUMENT, o + ": scale " + std::to_string(scale) + " overflows float32");
}

// t must be on q's device, of dtype dt and shaped like ref (or [B,Hq,S] for lse).
void check_like(const char *op, const char *name, const l2c_tensor *t, const l2c_tensor &q,
                l2c_dtype dt, const l2c_tensor &ref) {
  const std::string o(op);
  check_form(t, (o + ": " + name).c_str());
  if (!same_device(t->device, q.device))
    fail(L2C_DEVICE_MISMATCH, o + ": q on " + device_str(q.device) + ", " + name + " on " +
                                  device_str(t->device));
  if (t->dtype != dt)
    fail(L2C_DTYPE_MISMATCH, o + ": " + desc(name, *t) + " must be " + l2c::dtype_name(dt));
  if (!same_shape(*t, ref))
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc(name, *t) + " must be " + dims(ref));
}

l2c_tensor lse_shape(const l2c_tensor &q) {
  l2c_tensor t = q;
  t.ndim = 3;
  t.shape[0] = q.shape[0];
  t.shape[1] = q.shape[2];
  t.shape[2] = q.shape[1];
  return t;
}

}  // namespace

extern "C" {

l2c_status l2c_attention_forward(const l2c_attention_forward_args *a) {
  return guarded([&] {
    const char *op = "attention_forward";
    if (!a) fail(L2C_INVALID_ARGUMENT, "attention_forward: null arguments");
    l2c::AttentionParams p;
    check_inputs(op, a->q, a->k, a->v, a->key_padding_mask, a->scale, p);
    check_like(op, "out", a->out, *a->q, a->q->dtype, *a->q);
    check_like(op, "lse", a->lse, *a->q, L2C_FLOAT32, lse_shape(*a->q));
    p.causal = a->causal != 0;
    float *lse = static_cast<float *>(a->lse->data);
    if (a->q->device.type == L2C_CUDA)
      l2c::cuda::attention_forward(a->q->device.index, p, a->out->data, lse);
    else
      l2c::cpu::attention_forward(p, a->out->data, lse);
  });
}

l2c_status l2c_attention_backward(const l2c_attention_backward_args *a) {
  return guarded([&] {
    const char *op = "attention_backward";
    if (!a) fail(L2C_INVALID_ARGUMENT, "attention_backward: null arguments");
    l2c::AttentionParams p;
    check_inputs(op, a->q, a->k, a->v, a->key_padding_mask, a->scale, p);
    const l2c_tensor &q = *a->q;
    check_like(op, "dout", a->dout, q, q.dtype, q);
    check_like(op, "out", a->out, q, q.dtype, q);
    check_like(op, "lse", a->lse, q, L2C_FLOAT32, lse_shape(q));
    check_like(op, "dq", a->dq, q, q.dtype, q);
    check_like(op, "dk", a->dk, q, q.dtype, *a->k);
    check_like(op, "dv", a->dv, q, q.dtype, *a->v);
    p.causal = a->causal != 0;
    const float *lse = static_cast<const float *>(a->lse->data);
    if (q.device.type == L2C_CUDA)
      l2c::cuda::attention_backward(q.device.index, p, a->dout->data, a->out->data, lse,
                                    a->dq->data, a->dk->data, a->dv->data);
    else
      l2c::cpu::attention_backward(p, a->dout->data, a->out->data, lse, a->dq->data,
                                   a->dk->data, a->dv->data);
  });
}

}  // extern "C"
