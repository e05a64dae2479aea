// ops_attention.cc: Node-API glue of the attention kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val) and options, calls the C ABI, throws typed errors.
#include "addon.h"

namespace l2c_napi {

// attentionForward(q, k, v, mask | null, out, lse, causal, scale)
static Napi::Value AttentionForward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor q = tensor_val(env, info[0], "attention: q");
  l2c_tensor k = tensor_val(env, info[1], "attention: k");
  l2c_tensor v = tensor_val(env, info[2], "attention: v");
  l2c_tensor mask;
  bool has_mask = opt_tensor_val(env, info[3], "attention: keyPaddingMask", &mask);
  l2c_tensor out = tensor_val(env, info[4], "attention: out");
  l2c_tensor lse = tensor_val(env, info[5], "attention: lse");
  l2c_attention_forward_args a{&q, &k, &v, has_mask ? &mask : nullptr, &out, &lse,
                               info[6].ToBoolean().Value() ? 1 : 0,
                               info[7].As<Napi::Number>().DoubleValue()};
  check(env, l2c_attention_forward(&a));
  return env.Undefined();
}

// attentionBackward(dout, q, k, v, out, lse, mask | null, dq, dk, dv, causal, scale)
static Napi::Value AttentionBackward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor dout = tensor_val(env, info[0], "attentionBackward: dOut");
  l2c_tensor q = tensor_val(env, info[1], "attentionBackward: q");
  l2c_tensor k = tensor_val(env, info[2], "attentionBackward: k");
  l2c_tensor v = tensor_val(env, info[3], "attentionBackward: v");
  l2c_tensor out = tensor_val(env, info[4], "attentionBackward: out");
  l2c_tensor lse = tensor_val(env, info[5], "attentionBackward: lse");
  l2c_tensor mask;
  bool has_mask = opt_tensor_val(env, info[6], "attentionBackward: keyPaddingMask", &mask);
  l2c_tensor dq = tensor_val(env, info[7], "attentionBackward: dq");
  l2c_tensor dk = tensor_val(env, info[8], "attentionBackward: dk");
  l2c_tensor dv = tensor_val(env, info[9], "attentionBackward: dv");
  l2c_attention_backward_args a{&dout, &q, &k, &v, &out, &lse, has_mask ? &mask : nullptr,
                                &dq, &dk, &dv, info[10].ToBoolean().Value() ? 1 : 0,
                                info[11].As<Napi::Number>().DoubleValue()};
  check(env, l2c_attention_backward(&a));
  return env.Undefined();
}

void init_attention(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
}

}  // namespace l2c_napi
