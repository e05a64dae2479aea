// ops_layers.cc: Node-API glue of the layers kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val) and options, calls the C ABI, throws typed errors.
// One export per C entry, named layers<Entry>; argument order as in the C args struct.
#include <string>

#include "addon.h"

namespace l2c_napi {
namespace {

double num(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw_error(info.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}
int32_t int_arg(const Napi::CallbackInfo &info, size_t i, const char *what) {
  return (int32_t)num(info, i, what);
}
l2c_tensor ten(const Napi::CallbackInfo &info, size_t i, const char *what) {
  return tensor_val(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), what);
}
// A nullable tensor: returns null for null / undefined, else fills *store.
const l2c_tensor *opt_ten(const Napi::CallbackInfo &info, size_t i, const char *what, l2c_tensor *store) {
  if (info.Length() <= i) return nullptr;
  return opt_tensor_val(info.Env(), info[i], what, store) ? store : nullptr;
}

// layersBinary(op, a, b, out)
Napi::Value Binary(const Napi::CallbackInfo &info) {
  int32_t op = int_arg(info, 0, "binary: op");
  l2c_tensor a = ten(info, 1, "binary: a"), b = ten(info, 2, "binary: b"), o = ten(info, 3, "binary: out");
  l2c_binary_args args{&a, &b, &o, op};
  check(info.Env(), l2c_binary(&args));
  return info.Env().Undefined();
}

// layersScale(x, out, alpha)
Napi::Value Scale(const Napi::CallbackInfo &info) {
  l2c_tensor x = ten(info, 0, "scale: x"), o = ten(info, 1, "scale: out");
  l2c_broadcast_scale_args args{&x, &o, num(info, 2, "scale: factor")};
  check(info.Env(), l2c_broadcast_scale(&args));
  return info.Env().Undefined();
}

// layersMulBackward(dy, a, b, da | null, db | null)
Napi::Value MulBackward(const Napi::CallbackInfo &info) {
  l2c_tensor dy = ten(info, 0, "mul_backward: dy"), a = ten(info, 1, "mul_backward: a"), b = ten(info, 2, "mul_backward: b");
  l2c_tensor sa, sb;
  l2c_mul_backward_args args{&dy, &a, &b, opt_ten(info, 3, "mul_backward: da", &sa), opt_ten(info, 4, "mul_backward: db", &sb)};
  check(info.Env(), l2c_mul_backward(&args));
  return info.Env().Undefined();
}

// layersSum(x, out, reduceMask, alpha)
Napi::Value Sum(const Napi::CallbackInfo &info) {
  l2c_tensor x = ten(info, 0, "sum: x"), o = ten(info, 1, "sum: out");
  l2c_sum_args args{&x, &o, (uint32_t)num(info, 2, "sum: mask"), num(info, 3, "sum: alpha")};
  check(info.Env(), l2c_sum(&args));
  return info.Env().Undefined();
}

// layersRmsNorm(x, weight | null, y, rstd, eps)
Napi::Value RmsNorm(const Napi::CallbackInfo &info) {
  l2c_tensor x = ten(info, 0, "rms_norm: x"), y = ten(info, 2, "rms_norm: y"), r = ten(info, 3, "rms_norm: rstd"), w;
  l2c_rms_norm_args args{&x, opt_ten(info, 1, "rms_norm: weight", &w), &y, &r, num(info, 4, "rms_norm: eps")};
  check(info.Env(), l2c_rms_norm_forward(&args));
  return info.Env().Undefined();
}

// layersRmsNormBackward(dy, x, weight | null, rstd, dx, dweight | null)
Napi::Value RmsNormBackward(const Napi::CallbackInfo &info) {
  const char *op = "rms_norm_backward";
  l2c_tensor dy = ten(info, 0, op), x = ten(info, 1, op), r = ten(info, 3, op), dx = ten(info, 4, op), w, dw;
  l2c_rms_norm_backward_args args{&dy, &x, opt_ten(info, 2, op, &w), &r, &dx, opt_ten(info, 5, op, &dw)};
  check(info.Env(), l2c_rms_norm_backward(&args));
  return info.Env().Undefined();
}

// layersLayerNorm(x, weight | null, bias | null, y, mean, rstd, eps)
Napi::Value LayerNorm(const Napi::CallbackInfo &info) {
  const char *op = "layer_norm";
  l2c_tensor x = ten(info, 0, op), y = ten(info, 3, op), m = ten(info, 4, op), r = ten(info, 5, op), w, b;
  l2c_layer_norm_args args{&x, opt_ten(info, 1, op, &w), opt_ten(info, 2, op, &b), &y, &m, &r, num(info, 6, "layer_norm: eps")};
  check(info.Env(), l2c_layer_norm_forward(&args));
  return info.Env().Undefined();
}

// layersLayerNormBackward(dy, x, weight | null, mean, rstd, dx, dweight | null, dbias | null)
Napi::Value LayerNormBackward(const Napi::CallbackInfo &info) {
  const char *op = "layer_norm_backward";
  l2c_tensor dy = ten(info, 0, op), x = ten(info, 1, op), m = ten(info, 3, op), r = ten(info, 4, op), dx = ten(info, 5, op);
  l2c_tensor w, dw, db;
  l2c_layer_norm_backward_args args{&dy, &x, opt_ten(info, 2, op, &w), &m, &r, &dx, opt_ten(info, 6, op, &dw),
                                    opt_ten(info, 7, op, &db)};
  check(info.Env(), l2c_layer_norm_backward(&args));
  return info.Env().Undefined();
}

// layersL2Normalize(x, y, eps)
Napi::Value L2Normalize(const Napi::CallbackInfo &info) {
  l2c_tensor x = ten(info, 0, "l2_normalize: x"), y = ten(info, 1, "l2_normalize: y");
  l2c_l2_normalize_args args{&x, &y, num(info, 2, "l2_normalize: eps")};
  check(info.Env(), l2c_l2_normalize_forward(&args));
  return info.Env().Undefined();
}

// layersL2NormalizeBackward(dy, x, dx, eps)
Napi::Value L2NormalizeBackward(const Napi::CallbackInfo &info) {
  const char *op = "l2_normalize_backward";
  l2c_tensor dy = ten(info, 0, op), x = ten(info, 1, op), dx = ten(info, 2, op);
  l2c_l2_normalize_backward_args args{&dy, &x, &dx, num(info, 3, "l2_normalize_backward: eps")};
  check(info.Env(), l2c_l2_normalize_backward(&args));
  return info.Env().Undefined();
}

// layersSoftmax(x, y)
Napi::Value Softmax(const Napi::CallbackInfo &info) {
  l2c_tensor x = ten(info, 0, "softmax: x"), y = ten(info, 1, "softmax: y");
  l2c_softmax_args args{&x, &y};
  check(info.Env(), l2c_softmax_forward(&args));
  return info.Env().Undefined();
}

// layersSoftmaxBackward(dy, y, dx)
Napi::Value SoftmaxBackward(const Napi::CallbackInfo &info) {
  const char *op = "softmax_backward";
  l2c_tensor dy = ten(info, 0, op), y = ten(info, 1, op), dx = ten(info, 2, op);
  l2c_softmax_backward_args args{&dy, &y, &dx};
  check(info.Env(), l2c_softmax_backward(&args));
  return info.Env().Undefined();
}

// layersRope(x, positions, out, backward, theta, scalingType, factor, lowFreqFactor,
//            highFreqFactor, originalMaxPositionEmbeddings)
Napi::Value Rope(const Napi::CallbackInfo &info) {
  const char *op = "rope";
  l2c_tensor x = ten(info, 0, op), p = ten(info, 1, op), o = ten(info, 2, op);
  bool backward = info.Length() > 3 && info[3].ToBoolean().Value();
  l2c_rope_args args{&x, &p, &o, num(info, 4, "rope: theta"), int_arg(info, 5, "rope: scaling"), num(info, 6, "rope: factor"),
                     num(info, 7, "rope: lowFreqFactor"), num(info, 8, "rope: highFreqFactor"),
                     num(info, 9, "rope: originalMaxPositionEmbeddings")};
  check(info.Env(), backward ? l2c_rope_backward(&args) : l2c_rope_forward(&args));
  return info.Env().Undefined();
}

// layersActivation(kind, x, y)
Napi::Value Activation(const Napi::CallbackInfo &info) {
  int32_t kind = int_arg(info, 0, "activation: kind");
  l2c_tensor x = ten(info, 1, "activation: x"), y = ten(info, 2, "activation: y");
  l2c_activation_args args{&x, &y, kind};
  check(info.Env(), l2c_activation_forward(&args));
  return info.Env().Undefined();
}

// layersActivationBackward(kind, dy, x, dx)
Napi::Value ActivationBackward(const Napi::CallbackInfo &info) {
  const char *op = "activation_backward";
  int32_t kind = int_arg(info, 0, "activation_backward: kind");
  l2c_tensor dy = ten(info, 1, op), x = ten(info, 2, op), dx = ten(info, 3, op);
  l2c_activation_backward_args args{&dy, &x, &dx, kind};
  check(info.Env(), l2c_activation_backward(&args));
  return info.Env().Undefined();
}

// layersSwiglu(gate, up, out)
Napi::Value Swiglu(const Napi::CallbackInfo &info) {
  l2c_tensor g = ten(info, 0, "swiglu: gate"), u = ten(info, 1, "swiglu: up"), o = ten(info, 2, "swiglu: out");
  l2c_swiglu_args args{&g, &u, &o};
  check(info.Env(), l2c_swiglu_forward(&args));
  return info.Env().Undefined();
}

// layersSwigluBackward(dy, gate, up, dgate, dup)
Napi::Value SwigluBackward(const Napi::CallbackInfo &info) {
  const char *op = "swiglu_backward";
  l2c_tensor dy = ten(info, 0, op), g = ten(info, 1, op), u = ten(info, 2, op), dg = ten(info, 3, op), du = ten(info, 4, op);
  l2c_swiglu_backward_args args{&dy, &g, &u, &dg, &du};
  check(info.Env(), l2c_swiglu_backward(&args));
  return info.Env().Undefined();
}

// layersDropout(x, y, p, seed: bigint, backward)
Napi::Value Dropout(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor x = ten(info, 0, "dropout: x"), y = ten(info, 1, "dropout: y");
  float p = (float)num(info, 2, "dropout: p");
  if (info.Length() <= 3 || !info[3].IsBigInt()) throw_error(env, "INVALID_ARGUMENT", "dropout: seed must be a bigint");
  bool lossless;
  uint64_t seed = info[3].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_error(env, "INVALID_ARGUMENT", "dropout: seed must be a non-negative integer below 2^64");
  bool backward = info.Length() > 4 && info[4].ToBoolean().Value();
  l2c_dropout_args args{&x, &y, p, seed};
  check(env, backward ? l2c_dropout_backward(&args) : l2c_dropout_forward(&args));
  return env.Undefined();
}

// layersMaskedMeanPool(hidden, mask, out)
Napi::Value MaskedMeanPool(const Napi::CallbackInfo &info) {
  const char *op = "masked_mean_pool";
  l2c_tensor h = ten(info, 0, op), m = ten(info, 1, op), o = ten(info, 2, op);
  l2c_masked_mean_pool_args args{&h, &m, &o};
  check(info.Env(), l2c_masked_mean_pool_forward(&args));
  return info.Env().Undefined();
}

// layersMaskedMeanPoolBackward(dy, mask, dhidden)
Napi::Value MaskedMeanPoolBackward(const Napi::CallbackInfo &info) {
  const char *op = "masked_mean_pool_backward";
  l2c_tensor dy = ten(info, 0, op), m = ten(info, 1, op), dh = ten(info, 2, op);
  l2c_masked_mean_pool_backward_args args{&dy, &m, &dh};
  check(info.Env(), l2c_masked_mean_pool_backward(&args));
  return info.Env().Undefined();
}

}  // namespace

void init_layers(Napi::Env env, Napi::Object exports) {
  exports.Set("layersBinary", Napi::Function::New(env, Binary));
  exports.Set("layersScale", Napi::Function::New(env, Scale));
  exports.Set("layersMulBackward", Napi::Function::New(env, MulBackward));
  exports.Set("layersSum", Napi::Function::New(env, Sum));
  exports.Set("layersRmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("layersRmsNormBackward", Napi::Function::New(env, RmsNormBackward));
  exports.Set("layersLayerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("layersLayerNormBackward", Napi::Function::New(env, LayerNormBackward));
  exports.Set("layersL2Normalize", Napi::Function::New(env, L2Normalize));
  exports.Set("layersL2NormalizeBackward", Napi::Function::New(env, L2NormalizeBackward));
  exports.Set("layersSoftmax", Napi::Function::New(env, Softmax));
  exports.Set("layersSoftmaxBackward", Napi::Function::New(env, SoftmaxBackward));
  exports.Set("layersRope", Napi::Function::New(env, Rope));
  exports.Set("layersActivation", Napi::Function::New(env, Activation));
  exports.Set("layersActivationBackward", Napi::Function::New(env, ActivationBackward));
  exports.Set("layersSwiglu", Napi::Function::New(env, Swiglu));
  exports.Set("layersSwigluBackward", Napi::Function::New(env, SwigluBackward));
  exports.Set("layersDropout", Napi::Function::New(env, Dropout));
  exports.Set("layersMaskedMeanPool", Napi::Function::New(env, MaskedMeanPool));
  exports.Set("layersMaskedMeanPoolBackward", Napi::Function::New(env, MaskedMeanPoolBackward));
}

}  // namespace l2c_napi
