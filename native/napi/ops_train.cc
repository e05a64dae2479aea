// ops_train.cc: Node-API glue of the train kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val), tensor lists and options, calls the C ABI, throws typed errors.
#include <string>
#include <vector>

#include "addon.h"

namespace l2c_napi {
namespace {

double num(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw_error(info.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

l2c_tensor tval(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i) throw_error(info.Env(), "INVALID_ARGUMENT", std::string(what) + ": missing");
  return tensor_val(info.Env(), info[i], what);
}

// An optional tensor at info[i]; *present says whether it was given.
l2c_tensor opt_tval(const Napi::CallbackInfo &info, size_t i, const char *what, bool *present) {
  l2c_tensor t{};
  *present = info.Length() > i && opt_tensor_val(info.Env(), info[i], what, &t);
  return t;
}

// A JS array of tensors; entries may be null when nullable (reported in `present`).
std::vector<l2c_tensor> tlist(const Napi::CallbackInfo &info, size_t i, const char *what,
                              std::vector<char> *present = nullptr) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsArray())
    throw_error(env, "INVALID_ARGUMENT", std::string(what) + " must be an array of tensors");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<l2c_tensor> out(a.Length());
  if (present) present->assign(a.Length(), 0);
  for (uint32_t k = 0; k < a.Length(); k++) {
    std::string w = std::string(what) + "[" + std::to_string(k) + "]";
    Napi::Value v = a.Get(k);
    if (present) {
      if (opt_tensor_val(env, v, w.c_str(), &out[k])) (*present)[k] = 1;
    } else {
      out[k] = tensor_val(env, v, w.c_str());
    }
  }
  return out;
}

// embeddingForward(weight, ids, out)
Napi::Value Embedding(const Napi::CallbackInfo &info) {
  l2c_tensor w = tval(info, 0, "embedding: weight"), ids = tval(info, 1, "embedding: ids"),
             out = tval(info, 2, "embedding: out");
  l2c_embedding_args a{};
  a.weight = &w;
  a.ids = &ids;
  a.out = &out;
  check(info.Env(), l2c_embedding_forward(&a));
  return info.Env().Undefined();
}

// embeddingBackward(dy, ids, dweight, paddingIdx: number, -1 = none)
Napi::Value EmbeddingBackward(const Napi::CallbackInfo &info) {
  l2c_tensor dy = tval(info, 0, "embedding_backward: dy"), ids = tval(info, 1, "embedding_backward: ids"),
             dw = tval(info, 2, "embedding_backward: dweight");
  double pad = num(info, 3, "embedding_backward: padding_idx");
  l2c_embedding_args a{};
  a.dy = &dy;
  a.ids = &ids;
  a.dweight = &dw;
  a.has_padding_idx = pad >= 0 ? 1 : 0;
  a.padding_idx = (int64_t)pad;
  check(info.Env(), l2c_embedding_backward(&a));
  return info.Env().Undefined();
}

// crossEntropyForward(hidden, weight, bias|null, targets, loss, lse, ignoreIndex, reduction, chunkSize)
Napi::Value CrossEntropy(const Napi::CallbackInfo &info) {
  const char *op = "cross_entropy";
  bool has_bias;
  l2c_tensor h = tval(info, 0, "cross_entropy: hidden"), w = tval(info, 1, "cross_entropy: weight");
  l2c_tensor b = opt_tval(info, 2, "cross_entropy: bias", &has_bias);
  l2c_tensor t = tval(info, 3, "cross_entropy: targets"), loss = tval(info, 4, "cross_entropy: loss"),
             lse = tval(info, 5, "cross_entropy: lse");
  l2c_cross_entropy_args a{};
  a.hidden = &h;
  a.weight = &w;
  a.bias = has_bias ? &b : nullptr;
  a.targets = &t;
  a.loss = &loss;
  a.lse = &lse;
  a.ignore_index = (int64_t)num(info, 6, op);
  a.reduction = (l2c_reduction)(int)num(info, 7, op);
  a.chunk_size = (int64_t)num(info, 8, op);
  check(info.Env(), l2c_cross_entropy_forward(&a));
  return info.Env().Undefined();
}

// crossEntropyBackward(hidden, weight, bias|null, targets, lse, dhidden, dweight|null,
//                      dbias|null, ignoreIndex, reduction, chunkSize, gradLoss)
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo &info) {
  const char *op = "cross_entropy_backward";
  bool has_bias, has_dw, has_db;
  l2c_tensor h = tval(info, 0, "cross_entropy_backward: hidden"), w = tval(info, 1, "cross_entropy_backward: weight");
  l2c_tensor b = opt_tval(info, 2, "cross_entropy_backward: bias", &has_bias);
  l2c_tensor t = tval(info, 3, "cross_entropy_backward: targets"), lse = tval(info, 4, "cross_entropy_backward: lse"),
             dh = tval(info, 5, "cross_entropy_backward: dhidden");
  l2c_tensor dw = opt_tval(info, 6, "cross_entropy_backward: dweight", &has_dw);
  l2c_tensor db = opt_tval(info, 7, "cross_entropy_backward: dbias", &has_db);
  l2c_cross_entropy_args a{};
  a.hidden = &h;
  a.weight = &w;
  a.bias = has_bias ? &b : nullptr;
  a.targets = &t;
  a.lse = &lse;
  a.dhidden = &dh;
  a.dweight = has_dw ? &dw : nullptr;
  a.dbias = has_db ? &db : nullptr;
  a.ignore_index = (int64_t)num(info, 8, op);
  a.reduction = (l2c_reduction)(int)num(info, 9, op);
  a.chunk_size = (int64_t)num(info, 10, op);
  a.grad_loss = num(info, 11, op);
  check(info.Env(), l2c_cross_entropy_backward(&a));
  return info.Env().Undefined();
}

// adamw(params[], grads[], expAvg[], expAvgSq[], master (array with nulls) | null,
//       decay boolean[] | null, lr, beta1, beta2, eps, weightDecay, step, maxGradNorm)
//   -> [gradNorm, skipped]
Napi::Value AdamW(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<l2c_tensor> p = tlist(info, 0, "adamw: params"), g = tlist(info, 1, "adamw: grads"),
                          m = tlist(info, 2, "adamw: exp_avg"), v = tlist(info, 3, "adamw: exp_avg_sq");
  size_t n = p.size();
  if (g.size() != n || m.size() != n || v.size() != n)
    throw_error(env, "INVALID_ARGUMENT", "adamw: params, grads, exp_avg and exp_avg_sq must have the same length");
  std::vector<char> has_master;
  std::vector<l2c_tensor> ms;
  std::vector<const l2c_tensor *> mptr;
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
    ms = tlist(info, 4, "adamw: master", &has_master);
    if (ms.size() != n) throw_error(env, "INVALID_ARGUMENT", "adamw: master must have one entry per parameter");
    for (size_t i = 0; i < n; i++) mptr.push_back(has_master[i] ? &ms[i] : nullptr);
  }
  std::vector<uint8_t> decay;
  if (info.Length() > 5 && info[5].IsArray()) {
    Napi::Array d = info[5].As<Napi::Array>();
    if (d.Length() != n) throw_error(env, "INVALID_ARGUMENT", "adamw: decay must have one entry per parameter");
    for (uint32_t i = 0; i < d.Length(); i++) decay.push_back(d.Get(i).ToBoolean().Value() ? 1 : 0);
  }
  l2c_adamw_args a{};
  a.n = (int32_t)n;
  a.params = p.data();
  a.grads = g.data();
  a.exp_avg = m.data();
  a.exp_avg_sq = v.data();
  a.master = mptr.empty() ? nullptr : mptr.data();
  a.decay = decay.empty() ? nullptr : decay.data();
  a.lr = num(info, 6, "adamw: lr");
  a.beta1 = num(info, 7, "adamw: beta1");
  a.beta2 = num(info, 8, "adamw: beta2");
  a.eps = num(info, 9, "adamw: eps");
  a.weight_decay = num(info, 10, "adamw: weight_decay");
  a.step = (int64_t)num(info, 11, "adamw: step");
  a.max_grad_norm = num(info, 12, "adamw: max_grad_norm");
  double norm = 0;
  int32_t skipped = 0;
  a.grad_norm = &norm;
  a.skipped = &skipped;
  check(env, l2c_adamw(&a));
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Napi::Number::New(env, norm));
  r.Set(1u, Napi::Boolean::New(env, skipped != 0));
  return r;
}

// gradNorm(grads[]) -> number
Napi::Value GradNorm(const Napi::CallbackInfo &info) {
  std::vector<l2c_tensor> g = tlist(info, 0, "grad_norm: grads");
  double out = 0;
  check(info.Env(), l2c_grad_norm((int32_t)g.size(), g.data(), &out));
  return Napi::Number::New(info.Env(), out);
}

// permute(x, out, dims[])
Napi::Value Permute(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor x = tval(info, 0, "permute: x"), out = tval(info, 1, "permute: out");
  l2c_permute_args a{};
  a.x = &x;
  a.out = &out;
  if (info.Length() < 3 || !info[2].IsArray()) throw_error(env, "INVALID_ARGUMENT", "permute: dims must be an array");
  Napi::Array d = info[2].As<Napi::Array>();
  if (d.Length() != (uint32_t)x.ndim)
    throw_error(env, "INVALID_ARGUMENT", "permute: dims must have one entry per dim of x");
  for (uint32_t i = 0; i < d.Length(); i++) {
    Napi::Value e = d.Get(i);
    if (!e.IsNumber()) throw_error(env, "INVALID_ARGUMENT", "permute: dims must hold numbers");
    a.dims[i] = e.As<Napi::Number>().Int32Value();
  }
  check(env, l2c_permute(&a));
  return env.Undefined();
}

// concat(parts[], whole, dim) / split(whole, parts[], dim)
Napi::Value ConcatOrSplit(const Napi::CallbackInfo &info, bool split) {
  const char *op = split ? "split" : "concat";
  std::vector<l2c_tensor> parts = tlist(info, split ? 1 : 0, split ? "split: outputs" : "concat: inputs");
  l2c_tensor whole = tval(info, split ? 0 : 1, split ? "split: x" : "concat: out");
  l2c_concat_args a{};
  a.n = (int32_t)parts.size();
  a.parts = parts.data();
  a.whole = &whole;
  a.dim = (int32_t)num(info, 2, op);
  check(info.Env(), split ? l2c_split(&a) : l2c_concat(&a));
  return info.Env().Undefined();
}
Napi::Value Concat(const Napi::CallbackInfo &info) { return ConcatOrSplit(info, false); }
Napi::Value Split(const Napi::CallbackInfo &info) { return ConcatOrSplit(info, true); }

// sliceForward(whole, part, dim, start) / sliceBackward(whole, part, dim, start)
Napi::Value SliceOp(const Napi::CallbackInfo &info, bool backward) {
  const char *op = backward ? "slice_backward" : "slice";
  l2c_tensor whole = tval(info, 0, backward ? "slice_backward: dx" : "slice: x");
  l2c_tensor part = tval(info, 1, backward ? "slice_backward: dy" : "slice: out");
  l2c_slice_args a{};
  a.whole = &whole;
  a.part = &part;
  a.dim = (int32_t)num(info, 2, op);
  a.start = (int64_t)num(info, 3, op);
  check(info.Env(), backward ? l2c_slice_backward(&a) : l2c_slice_forward(&a));
  return info.Env().Undefined();
}
Napi::Value Slice(const Napi::CallbackInfo &info) { return SliceOp(info, false); }
Napi::Value SliceBackward(const Napi::CallbackInfo &info) { return SliceOp(info, true); }

// patchifyForward(images, patches, p) / patchifyBackward(images, patches, p)
Napi::Value PatchOp(const Napi::CallbackInfo &info, bool backward) {
  const char *op = backward ? "unpatchify" : "patchify";
  l2c_tensor im = tval(info, 0, backward ? "unpatchify: images" : "patchify: images");
  l2c_tensor pt = tval(info, 1, backward ? "unpatchify: patches" : "patchify: patches");
  l2c_patchify_args a{};
  a.images = &im;
  a.patches = &pt;
  a.patch_size = (int64_t)num(info, 2, op);
  check(info.Env(), backward ? l2c_patchify_backward(&a) : l2c_patchify_forward(&a));
  return info.Env().Undefined();
}
Napi::Value Patchify(const Napi::CallbackInfo &info) { return PatchOp(info, false); }
Napi::Value Unpatchify(const Napi::CallbackInfo &info) { return PatchOp(info, true); }

}  // namespace

void init_train(Napi::Env env, Napi::Object exports) {
  exports.Set("embeddingForward", Napi::Function::New(env, Embedding));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward));
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropy));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("gradNorm", Napi::Function::New(env, GradNorm));
  exports.Set("permute", Napi::Function::New(env, Permute));
  exports.Set("concat", Napi::Function::New(env, Concat));
  exports.Set("split", Napi::Function::New(env, Split));
  exports.Set("sliceForward", Napi::Function::New(env, Slice));
  exports.Set("sliceBackward", Napi::Function::New(env, SliceBackward));
  exports.Set("patchifyForward", Napi::Function::New(env, Patchify));
  exports.Set("patchifyBackward", Napi::Function::New(env, Unpatchify));
}

}  // namespace l2c_napi
