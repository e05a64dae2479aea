// ops_lora.cc: Node-API glue of the lora kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val) and options, calls the C ABI, throws typed errors.
#include <string>

#include "addon.h"

namespace l2c_napi {

namespace {

float num_arg(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw_error(info.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a number");
  return (float)info[i].As<Napi::Number>().DoubleValue();
}

uint64_t seed_arg(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i || !info[i].IsBigInt())
    throw_error(info.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a bigint");
  bool lossless = false;
  uint64_t s = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless)
    throw_error(info.Env(), "INVALID_ARGUMENT", std::string(what) + " must be in [0, 2^64)");
  return s;
}

// loraForward(x, weight, loraA, loraB, bias | null, y, scale, p, seed: bigint)
Napi::Value LoraForward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9) throw_error(env, "INVALID_ARGUMENT", "loraForward: 9 arguments expected");
  l2c_tensor x = tensor_val(env, info[0], "loraLinear: x");
  l2c_tensor w = tensor_val(env, info[1], "loraLinear: weight");
  l2c_tensor a = tensor_val(env, info[2], "loraLinear: loraA");
  l2c_tensor b = tensor_val(env, info[3], "loraLinear: loraB");
  l2c_tensor bias;
  bool has_bias = opt_tensor_val(env, info[4], "loraLinear: bias", &bias);
  l2c_tensor y = tensor_val(env, info[5], "loraLinear: y");
  l2c_lora_forward_args args{&x, &w, &a, &b, has_bias ? &bias : nullptr, &y,
                             num_arg(info, 6, "loraLinear: scale"),
                             num_arg(info, 7, "loraLinear: dropout.p"),
                             seed_arg(info, 8, "loraLinear: dropout.seed")};
  check(env, l2c_lora_forward(&args));
  return env.Undefined();
}

// loraBackward(dy, x, weight, loraA, loraB, dx | null, dA, dB, scale, p, seed: bigint)
Napi::Value LoraBackward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 11) throw_error(env, "INVALID_ARGUMENT", "loraBackward: 11 arguments expected");
  l2c_tensor dy = tensor_val(env, info[0], "loraLinearBackward: dy");
  l2c_tensor x = tensor_val(env, info[1], "loraLinearBackward: x");
  l2c_tensor w = tensor_val(env, info[2], "loraLinearBackward: weight");
  l2c_tensor a = tensor_val(env, info[3], "loraLinearBackward: loraA");
  l2c_tensor b = tensor_val(env, info[4], "loraLinearBackward: loraB");
  l2c_tensor dx;
  bool has_dx = opt_tensor_val(env, info[5], "loraLinearBackward: dx", &dx);
  l2c_tensor da = tensor_val(env, info[6], "loraLinearBackward: dA");
  l2c_tensor db = tensor_val(env, info[7], "loraLinearBackward: dB");
  l2c_lora_backward_args args{&dy, &x, &w, &a, &b, has_dx ? &dx : nullptr, &da, &db,
                              num_arg(info, 8, "loraLinearBackward: scale"),
                              num_arg(info, 9, "loraLinearBackward: dropout.p"),
                              seed_arg(info, 10, "loraLinearBackward: dropout.seed")};
  check(env, l2c_lora_backward(&args));
  return env.Undefined();
}

// loraMerge(weight, loraA, loraB, scale, unmerge: boolean)
Napi::Value LoraMerge(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5) throw_error(env, "INVALID_ARGUMENT", "loraMerge: 5 arguments expected");
  const bool unmerge = info[4].ToBoolean().Value();
  const char *op = unmerge ? "unmergeLora" : "mergeLora";
  l2c_tensor w = tensor_val(env, info[0], (std::string(op) + ": weight").c_str());
  l2c_tensor a = tensor_val(env, info[1], (std::string(op) + ": loraA").c_str());
  l2c_tensor b = tensor_val(env, info[2], (std::string(op) + ": loraB").c_str());
  l2c_lora_merge_args args{&w, &a, &b, num_arg(info, 3, (std::string(op) + ": scale").c_str())};
  check(env, unmerge ? l2c_lora_unmerge(&args) : l2c_lora_merge(&args));
  return env.Undefined();
}

}  // namespace

void init_lora(Napi::Env env, Napi::Object exports) {
  exports.Set("loraForward", Napi::Function::New(env, LoraForward));
  exports.Set("loraBackward", Napi::Function::New(env, LoraBackward));
  exports.Set("loraMerge", Napi::Function::New(env, LoraMerge));
}

}  // namespace l2c_napi
