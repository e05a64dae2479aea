// api_train.cc: the C ABI entries of the train kernels (l2c_train.h): argument checks with
// typed errors naming the argument, then dispatch to the backend of the tensors' device
// (cpu/train.h or train_cuda.h).
#include <cmath>
#include <string>
#include <vector>

#include "api_util.h"
#include "backend.h"
#include "../cpu/train.h"
#include "train_cuda.h"

namespace {

using l2c::fail;
using namespace l2c::api;

std::string str(int64_t v) { return std::to_string(v); }

// check_form on every tensor given (null entries skipped), then one device for all of them
// (DEVICE_MISMATCH), which must exist (DEVICE_UNAVAILABLE). Returns it (the CPU when no
// tensor is given).
l2c_device one_device(const char *op, std::initializer_list<std::pair<const l2c_tensor *, const char *>> ts) {
  const l2c_tensor *first = nullptr;
  const char *first_name = nullptr;
  for (auto &t : ts) {
    if (!t.first) continue;
    if (!first) {
      first = t.first;
      first_name = t.second;
    } else if (!same_device(first->device, t.first->device)) {
      fail(L2C_DEVICE_MISMATCH, std::string(op) + ": " + first_name + " is on " +
                                    device_str(first->device) + " and " + t.second + " on " +
                                    device_str(t.first->device));
    }
  }
  if (!first) return l2c_device{L2C_CPU, 0};
  check_device(first->device, op);
  return first->device;
}

bool on_cuda(const l2c_device &d) { return d.type == L2C_CUDA; }

void need(const l2c_tensor *t, const std::string &what) {
  if (!t) fail(L2C_INVALID_ARGUMENT, what + ": null tensor");
  check_form(t, what.c_str());
}

void check_dtype(const l2c_tensor &t, l2c_dtype dt, const std::string &what) {
  if (t.dtype != dt)
    fail(L2C_DTYPE_MISMATCH, desc(what.c_str(), t) + " must be " + l2c::dtype_name(dt));
}

void check_floatn(const l2c_tensor &t, const std::string &what) { check_float(t, what.c_str()); }

bool same_shape(const l2c_tensor &a, const l2c_tensor &b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

void check_ndim(const l2c_tensor &t, int nd, const std::string &what, const char *shape_hint) {
  if (t.ndim != nd)
    fail(L2C_SHAPE_MISMATCH, desc(what.c_str(), t) + " must be " + std::to_string(nd) + "-D " +
                                 shape_hint);
}

// ---- embedding ----

l2c_device check_embedding(const l2c_embedding_args *a, bool backward) {
  const char *op = backward ? "embedding_backward" : "embedding";
  const std::string o(op);
  if (!a) fail(L2C_INVALID_ARGUMENT, o + ": null arguments");
  need(a->ids, o + ": ids");
  l2c_device dev;
  if (backward) {
    need(a->dy, o + ": dy");
    need(a->dweight, o + ": dweight");
    dev = one_device(op, {{a->ids, "ids"}, {a->dy, "dy"}, {a->dweight, "dweight"}});
  } else {
    need(a->weight, o + ": weight");
    need(a->out, o + ": out");
    dev = one_device(op, {{a->ids, "ids"}, {a->weight, "weight"}, {a->out, "out"}});
  }
  const l2c_tensor &ids = *a->ids;
  check_dtype(ids, L2C_INT32, o + ": ids");
  if (ids.ndim + 1 > L2C_MAX_DIMS)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("ids", ids) + " has too many dims");
  const l2c_tensor &table = backward ? *a->dweight : *a->weight;
  const l2c_tensor &rows = backward ? *a->dy : *a->out;
  const char *tname = backward ? "dweight" : "weight";
  const char *rname = backward ? "dy" : "out";
  check_ndim(table, 2, o + ": " + tname, "[V,H]");
  if (backward) {
    check_dtype(table, L2C_FLOAT32, o + ": dweight");
    check_floatn(rows, o + ": dy");
  } else {
    check_floatn(table, o + ": weight");
    check_dtype(rows, table.dtype, o + ": out");
  }
  bool ok = rows.ndim == ids.ndim + 1 && rows.shape[ids.ndim] == table.shape[1];
  for (int i = 0; ok && i < ids.ndim; i++) ok = rows.shape[i] == ids.shape[i];
  if (!ok)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc(rname, rows) + " must be ids' shape " +
                                 l2c::shape_str(ids) + " followed by H = " + str(table.shape[1]));
  if (backward && a->has_padding_idx && (a->padding_idx < 0 || a->padding_idx >= table.shape[0]))
    fail(L2C_INVALID_ARGUMENT, o + ": padding_idx " + str(a->padding_idx) + " is outside [0, " +
                                   str(table.shape[0]) + ")");
  return dev;
}

// ---- cross-entropy ----

l2c_device check_cross_entropy(const l2c_cross_entropy_args *a, bool backward, l2c::CrossEntropyParams &p) {
  const char *op = backward ? "cross_entropy_backward" : "cross_entropy";
  const std::string o(op);
  if (!a) fail(L2C_INVALID_ARGUMENT, o + ": null arguments");
  need(a->hidden, o + ": hidden");
  need(a->weight, o + ": weight");
  need(a->targets, o + ": targets");
  need(a->lse, o + ": lse");
  if (a->bias) need(a->bias, o + ": bias");
  if (backward) {
    need(a->dhidden, o + ": dhidden");
    if (a->dweight) need(a->dweight, o + ": dweight");
    if (a->dbias) need(a->dbias, o + ": dbias");
  } else {
    need(a->loss, o + ": loss");
  }
  const l2c_device dev = one_device(op, {{a->hidden, "hidden"}, {a->weight, "weight"}, {a->targets, "targets"},
                {a->lse, "lse"}, {a->bias, "bias"}, {backward ? a->dhidden : a->loss, backward ? "dhidden" : "loss"},
                {backward ? a->dweight : nullptr, "dweight"}, {backward ? a->dbias : nullptr, "dbias"}});
  const l2c_tensor &h = *a->hidden, &w = *a->weight, &t = *a->targets, &lse = *a->lse;
  check_floatn(h, o + ": hidden");
  check_floatn(w, o + ": weight");
  check_ndim(h, 2, o + ": hidden", "[N,H]");
  check_ndim(w, 2, o + ": weight", "[V,H]");
  int64_t N = h.shape[0], H = h.shape[1], V = w.shape[0];
  if (w.shape[1] != H)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("hidden", h) + " and " + desc("weight", w) +
                                 " must have the same H (last dim)");
  check_dtype(t, L2C_INT32, o + ": targets");
  if (t.ndim != 1 || t.shape[0] != N)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("targets", t) + " must be [" + str(N) + "] (hidden's N)");
  check_dtype(lse, L2C_FLOAT32, o + ": lse");
  if (lse.ndim != 1 || lse.shape[0] != N)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("lse", lse) + " must be [" + str(N) + "]");
  if (a->bias) {
    check_floatn(*a->bias, o + ": bias");
    if (a->bias->ndim != 1 || a->bias->shape[0] != V)
      fail(L2C_SHAPE_MISMATCH, o + ": " + desc("bias", *a->bias) + " must be [" + str(V) + "] (weight's V)");
  }
  if (a->reduction != L2C_REDUCTION_MEAN && a->reduction != L2C_REDUCTION_SUM)
    fail(L2C_INVALID_ARGUMENT, o + ": reduction must be mean (0) or sum (1)");
  if (a->chunk_size < 0) fail(L2C_INVALID_ARGUMENT, o + ": chunk_size " + str(a->chunk_size) + " < 0");
  if (backward) {
    const l2c_tensor &dh = *a->dhidden;
    check_dtype(dh, h.dtype, o + ": dhidden");
    if (!same_shape(dh, h))
      fail(L2C_SHAPE_MISMATCH, o + ": " + desc("dhidden", dh) + " must have hidden's shape " + l2c::shape_str(h));
    if (a->dweight) {
      check_dtype(*a->dweight, L2C_FLOAT32, o + ": dweight");
      if (!same_shape(*a->dweight, w))
        fail(L2C_SHAPE_MISMATCH, o + ": " + desc("dweight", *a->dweight) + " must have weight's shape " + l2c::shape_str(w));
    }
    if (a->dbias) {
      if (!a->bias) fail(L2C_INVALID_ARGUMENT, o + ": dbias given without bias");
      check_dtype(*a->dbias, L2C_FLOAT32, o + ": dbias");
      if (a->dbias->ndim != 1 || a->dbias->shape[0] != V)
        fail(L2C_SHAPE_MISMATCH, o + ": " + desc("dbias", *a->dbias) + " must be [" + str(V) + "]");
    }
    if (!std::isfinite(a->grad_loss))
      fail(L2C_INVALID_ARGUMENT, o + ": grad_loss must be finite (got " + std::to_string(a->grad_loss) + ")");
  } else {
    check_dtype(*a->loss, L2C_FLOAT32, o + ": loss");
    if (l2c::numel(*a->loss) != 1)
      fail(L2C_SHAPE_MISMATCH, o + ": " + desc("loss", *a->loss) + " must have one element");
  }
  p.hidden = a->hidden;
  p.weight = a->weight;
  p.bias = a->bias;
  p.targets = a->targets;
  p.loss = a->loss;
  p.lse = a->lse;
  p.dhidden = a->dhidden;
  p.dweight = a->dweight;
  p.dbias = a->dbias;
  p.ignore_index = a->ignore_index;
  p.mean = a->reduction == L2C_REDUCTION_MEAN;
  p.chunk_size = a->chunk_size > 0 ? a->chunk_size : 4096;
  p.grad_loss = a->grad_loss;
  return dev;
}

// ---- adamw ----

void check_list(const char *op, int32_t n, const l2c_tensor *list, const char *name) {
  if (n > 0 && !list) fail(L2C_INVALID_ARGUMENT, std::string(op) + ": " + name + " is null");
  for (int32_t i = 0; i < n; i++) {
    std::string w = std::string(op) + ": " + name + "[" + std::to_string(i) + "]";
    check_form(&list[i], w.c_str());
    if (!same_device(list[i].device, list[0].device))
      fail(L2C_DEVICE_MISMATCH, w + " is on " + device_str(list[i].device) + " and " + name +
                                    "[0] on " + device_str(list[0].device));
  }
}

std::string item(const char *name, int32_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

}  // namespace

extern "C" {

l2c_status l2c_embedding_forward(const l2c_embedding_args *args) {
  return guarded([&] {
    const l2c_device d = check_embedding(args, false);
    if (on_cuda(d))
      l2c::cuda::embedding_forward(d.index, *args->weight, *args->ids, *args->out);
    else
      l2c::cpu::embedding_forward(*args->weight, *args->ids, *args->out);
  });
}

l2c_status l2c_embedding_backward(const l2c_embedding_args *args) {
  return guarded([&] {
    const l2c_device d = check_embedding(args, true);
    const int64_t pad = args->has_padding_idx ? args->padding_idx : -1;
    if (on_cuda(d))
      l2c::cuda::embedding_backward(d.index, *args->dy, *args->ids, *args->dweight, pad);
    else
      l2c::cpu::embedding_backward(*args->dy, *args->ids, *args->dweight, pad);
  });
}

l2c_status l2c_cross_entropy_forward(const l2c_cross_entropy_args *args) {
  return guarded([&] {
    l2c::CrossEntropyParams p;
    const l2c_device d = check_cross_entropy(args, false, p);
    if (on_cuda(d))
      l2c::cuda::cross_entropy_forward(d.index, p);
    else
      l2c::cpu::cross_entropy_forward(p);
  });
}

l2c_status l2c_cross_entropy_backward(const l2c_cross_entropy_args *args) {
  return guarded([&] {
    l2c::CrossEntropyParams p;
    const l2c_device d = check_cross_entropy(args, true, p);
    if (on_cuda(d))
      l2c::cuda::cross_entropy_backward(d.index, p);
    else
      l2c::cpu::cross_entropy_backward(p);
  });
}

l2c_status l2c_adamw(const l2c_adamw_args *a) {
  return guarded([&] {
    const char *op = "adamw";
    if (!a) fail(L2C_INVALID_ARGUMENT, "adamw: null arguments");
    if (!a->grad_norm || !a->skipped) fail(L2C_INVALID_ARGUMENT, "adamw: null output pointer");
    if (a->n < 0) fail(L2C_INVALID_ARGUMENT, "adamw: n < 0");
    int32_t n = a->n;
    check_list(op, n, a->params, "params");
    check_list(op, n, a->grads, "grads");
    check_list(op, n, a->exp_avg, "exp_avg");
    check_list(op, n, a->exp_avg_sq, "exp_avg_sq");
    l2c_device dev{L2C_CPU, 0};
    if (n > 0) {
      dev = one_device(op, {{&a->params[0], "params[0]"}, {&a->grads[0], "grads[0]"},
                    {&a->exp_avg[0], "exp_avg[0]"}, {&a->exp_avg_sq[0], "exp_avg_sq[0]"}});
    }
    auto finite_in = [&](double v, double lo, double hi, const char *name, bool hi_open) {
      if (!std::isfinite(v) || v < lo || (hi_open ? v >= hi : v > hi))
        fail(L2C_INVALID_ARGUMENT, std::string("adamw: ") + name + " = " + std::to_string(v) +
                                       " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                       (hi_open ? ")" : "]"));
    };
    finite_in(a->lr, 0, INFINITY, "lr", false);
    finite_in(a->beta1, 0, 1, "beta1", true);
    finite_in(a->beta2, 0, 1, "beta2", true);
    finite_in(a->eps, 0, INFINITY, "eps", false);
    finite_in(a->weight_decay, 0, INFINITY, "weight_decay", false);
    if (a->step < 1) fail(L2C_INVALID_ARGUMENT, "adamw: step " + str(a->step) + " must be >= 1");
    if (std::isnan(a->max_grad_norm)) fail(L2C_INVALID_ARGUMENT, "adamw: max_grad_norm is NaN");
    std::vector<l2c::AdamWParam> ps;
    for (int32_t i = 0; i < n; i++) {
      const l2c_tensor &p = a->params[i], &g = a->grads[i], &m = a->exp_avg[i], &v = a->exp_avg_sq[i];
      const l2c_tensor *ms = a->master ? a->master[i] : nullptr;
      auto d = [&](const char *name, const l2c_tensor &t) { return desc(item(name, i).c_str(), t); };
      check_float(p, item("adamw: params", i).c_str());
      check_float(g, item("adamw: grads", i).c_str());
      if (!same_shape(g, p))
        fail(L2C_SHAPE_MISMATCH, "adamw: " + d("grads", g) + " must have the shape of " + d("params", p));
      for (auto mv : {std::make_pair(&m, "exp_avg"), std::make_pair(&v, "exp_avg_sq")}) {
        if (mv.first->dtype != L2C_FLOAT32)
          fail(L2C_DTYPE_MISMATCH, "adamw: " + d(mv.second, *mv.first) + " must be float32");
        if (!same_shape(*mv.first, p))
          fail(L2C_SHAPE_MISMATCH, "adamw: " + d(mv.second, *mv.first) + " must have the shape of " + d("params", p));
      }
      if (ms) {
        std::string w = "adamw: " + item("master", i);
        check_form(ms, w.c_str());
        if (!same_device(ms->device, p.device))
          fail(L2C_DEVICE_MISMATCH, w + " is on " + device_str(ms->device) + " and params on " + device_str(p.device));
        if (ms->dtype != L2C_FLOAT32)
          fail(L2C_DTYPE_MISMATCH, "adamw: " + d("master", *ms) + " must be float32");
        if (!same_shape(*ms, p))
          fail(L2C_SHAPE_MISMATCH, "adamw: " + d("master", *ms) + " must have the shape of " + d("params", p));
      } else if (p.dtype != L2C_FLOAT32) {
        fail(L2C_DTYPE_MISMATCH, "adamw: " + d("params", p) + " needs a float32 master copy (master[" +
                                     std::to_string(i) + "]) or must be float32");
      }
      ps.push_back({&p, &g, &m, &v, ms, a->decay ? a->decay[i] != 0 : true});
    }
    l2c::AdamWHyper h{a->lr, a->beta1, a->beta2, a->eps, a->weight_decay, a->step, a->max_grad_norm};
    bool skipped = false;
    *a->grad_norm = on_cuda(dev) ? l2c::cuda::adamw(dev.index, ps, h, &skipped) : l2c::cpu::adamw(ps, h, &skipped);
    *a->skipped = skipped ? 1 : 0;
  });
}

l2c_status l2c_grad_norm(int32_t n, const l2c_tensor *grads, double *out) {
  return guarded([&] {
    if (!out) fail(L2C_INVALID_ARGUMENT, "grad_norm: null output pointer");
    if (n < 0) fail(L2C_INVALID_ARGUMENT, "grad_norm: n < 0");
    check_list("grad_norm", n, grads, "grads");
    std::vector<const l2c_tensor *> gs;
    for (int32_t i = 0; i < n; i++) {
      check_float(grads[i], item("grad_norm: grads", i).c_str());
      gs.push_back(&grads[i]);
    }
    const l2c_device dev = n > 0 ? one_device("grad_norm", {{&grads[0], "grads[0]"}}) : l2c_device{L2C_CPU, 0};
    *out = on_cuda(dev) ? l2c::cuda::grad_norm(dev.index, gs) : l2c::cpu::grad_norm(gs);
  });
}

l2c_status l2c_permute(const l2c_permute_args *a) {
  return guarded([&] {
    if (!a) fail(L2C_INVALID_ARGUMENT, "permute: null arguments");
    need(a->x, "permute: x");
    need(a->out, "permute: out");
    const l2c_device dev = one_device("permute", {{a->x, "x"}, {a->out, "out"}});
    const l2c_tensor &x = *a->x, &o = *a->out;
    check_dtype(o, x.dtype, "permute: out");
    if (o.ndim != x.ndim)
      fail(L2C_SHAPE_MISMATCH, "permute: " + desc("out", o) + " must have " + str(x.ndim) + " dims like " + desc("x", x));
    bool seen[L2C_MAX_DIMS] = {};
    for (int i = 0; i < x.ndim; i++) {
      int32_t d = a->dims[i];
      if (d < 0 || d >= x.ndim || seen[d])
        fail(L2C_INVALID_ARGUMENT, "permute: dims is not a permutation of [0, " + str(x.ndim) + ")");
      seen[d] = true;
      if (o.shape[i] != x.shape[d])
        fail(L2C_SHAPE_MISMATCH, "permute: " + desc("out", o) + " dim " + str(i) + " must be x's dim " + str(d) +
                                     " of " + desc("x", x));
    }
    if (on_cuda(dev))
      l2c::cuda::permute(dev.index, x, o, a->dims);
    else
      l2c::cpu::permute(x, o, a->dims);
  });
}

static void concat_entry(const l2c_concat_args *a, bool split) {
  const char *op = split ? "split" : "concat";
  const std::string o(op);
  if (!a) fail(L2C_INVALID_ARGUMENT, o + ": null arguments");
  if (a->n < 1) fail(L2C_INVALID_ARGUMENT, o + ": needs at least one part");
  need(a->whole, o + (split ? ": x" : ": out"));
  check_list(op, a->n, a->parts, split ? "outputs" : "inputs");
  const l2c_tensor &w = *a->whole;
  const l2c_device dev = one_device(op, {{a->whole, split ? "x" : "out"}, {&a->parts[0], split ? "outputs[0]" : "inputs[0]"}});
  if (a->dim < 0 || a->dim >= w.ndim)
    fail(L2C_INVALID_ARGUMENT, o + ": dim " + str(a->dim) + " is outside [0, " + str(w.ndim) + ")");
  int64_t sum = 0;
  std::vector<const l2c_tensor *> parts;
  for (int32_t i = 0; i < a->n; i++) {
    const l2c_tensor &p = a->parts[i];
    std::string pn = item(split ? "outputs" : "inputs", i);
    check_dtype(p, w.dtype, o + ": " + pn);
    bool ok = p.ndim == w.ndim;
    for (int d = 0; ok && d < w.ndim; d++) ok = d == a->dim || p.shape[d] == w.shape[d];
    if (!ok)
      fail(L2C_SHAPE_MISMATCH, o + ": " + desc(pn.c_str(), p) + " and " + desc(split ? "x" : "out", w) +
                                   " must agree off dim " + str(a->dim));
    sum += p.shape[a->dim];
    parts.push_back(&p);
  }
  if (sum != w.shape[a->dim])
    fail(L2C_SHAPE_MISMATCH, o + ": the parts' sizes along dim " + str(a->dim) + " add up to " + str(sum) +
                                 ", not " + str(w.shape[a->dim]));
  if (on_cuda(dev))
    l2c::cuda::concat(dev.index, parts, w, a->dim, split);
  else
    l2c::cpu::concat(parts, w, a->dim, split);
}

l2c_status l2c_concat(const l2c_concat_args *args) {
  return guarded([&] { concat_entry(args, false); });
}
l2c_status l2c_split(const l2c_concat_args *args) {
  return guarded([&] { concat_entry(args, true); });
}

static void slice_entry(const l2c_slice_args *a, bool backward) {
  const char *op = backward ? "slice_backward" : "slice";
  const std::string o(op);
  if (!a) fail(L2C_INVALID_ARGUMENT, o + ": null arguments");
  need(a->whole, o + ": whole");
  need(a->part, o + ": part");
  const l2c_device dev = one_device(op, {{a->whole, "whole"}, {a->part, "part"}});
  const l2c_tensor &w = *a->whole, &p = *a->part;
  check_dtype(p, w.dtype, o + ": part");
  if (a->dim < 0 || a->dim >= w.ndim)
    fail(L2C_INVALID_ARGUMENT, o + ": dim " + str(a->dim) + " is outside [0, " + str(w.ndim) + ")");
  bool ok = p.ndim == w.ndim;
  for (int d = 0; ok && d < w.ndim; d++) ok = d == a->dim || p.shape[d] == w.shape[d];
  if (!ok) fail(L2C_SHAPE_MISMATCH, o + ": " + desc("part", p) + " and " + desc("whole", w) + " must agree off dim " + str(a->dim));
  if (a->start < 0 || a->start > w.shape[a->dim] - p.shape[a->dim])
    fail(L2C_INVALID_ARGUMENT, o + ": [" + str(a->start) + ", " + str(a->start + p.shape[a->dim]) +
                                   ") is outside [0, " + str(w.shape[a->dim]) + ") along dim " + str(a->dim));
  if (on_cuda(dev)) {
    if (backward)
      l2c::cuda::slice_backward(dev.index, w, p, a->dim, a->start);
    else
      l2c::cuda::slice_forward(dev.index, w, p, a->dim, a->start);
  } else if (backward) {
    l2c::cpu::slice_backward(w, p, a->dim, a->start);
  } else {
    l2c::cpu::slice_forward(w, p, a->dim, a->start);
  }
}

l2c_status l2c_slice_forward(const l2c_slice_args *args) {
  return guarded([&] { slice_entry(args, false); });
}
l2c_status l2c_slice_backward(const l2c_slice_args *args) {
  return guarded([&] { slice_entry(args, true); });
}

static void patchify_entry(const l2c_patchify_args *a, bool backward) {
  const char *op = backward ? "unpatchify" : "patchify";
  const std::string o(op);
  if (!a) fail(L2C_INVALID_ARGUMENT, o + ": null arguments");
  need(a->images, o + ": images");
  need(a->patches, o + ": patches");
  const l2c_device dev = one_device(op, {{a->images, "images"}, {a->patches, "patches"}});
  const l2c_tensor &im = *a->images, &pt = *a->patches;
  check_dtype(pt, im.dtype, o + ": patches");
  check_ndim(im, 4, o + ": images", "[B,C,H,W]");
  int64_t p = a->patch_size;
  if (p < 1) fail(L2C_INVALID_ARGUMENT, o + ": patch_size " + str(p) + " must be >= 1");
  int64_t B = im.shape[0], C = im.shape[1], H = im.shape[2], W = im.shape[3];
  if (H % p != 0 || W % p != 0)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("images", im) + ": H = " + str(H) + " and W = " + str(W) +
                                 " must be multiples of patch_size " + str(p));
  if (pt.ndim != 3 || pt.shape[0] != B || pt.shape[1] != (H / p) * (W / p) || pt.shape[2] != C * p * p)
    fail(L2C_SHAPE_MISMATCH, o + ": " + desc("patches", pt) + " must be [" + str(B) + "," +
                                 str((H / p) * (W / p)) + "," + str(C * p * p) + "]");
  if (on_cuda(dev))
    l2c::cuda::patchify(dev.index, im, pt, p, backward);
  else
    l2c::cpu::patchify(im, pt, p, backward);
}

l2c_status l2c_patchify_forward(const l2c_patchify_args *args) {
  return guarded([&] { patchify_entry(args, false); });
}
l2c_status l2c_patchify_backward(const l2c_patchify_args *args) {
  return guarded([&] { patchify_entry(args, true); });
}

}  // extern "C"
