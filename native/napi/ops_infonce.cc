// ops_infonce.cc: Node-API glue of the infonce kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val) and options, calls the C ABI, throws typed errors.
#include <string>

#include "addon.h"

namespace l2c_napi {

static double number_arg(Napi::Env env, Napi::Value v, const char *what) {
  if (!v.IsNumber()) throw_error(env, "INVALID_ARGUMENT", std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// infonceForward(a, b, scale: number, scaleTensor | null, symmetric: boolean,
//                loss, lseRows, lseCols | null)
static Napi::Value InfonceForward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor a = tensor_val(env, info[0], "infonce: a"), b = tensor_val(env, info[1], "infonce: b");
  l2c_tensor st{}, loss = tensor_val(env, info[5], "infonce: loss");
  l2c_tensor lr = tensor_val(env, info[6], "infonce: lseRows"), lc{};
  bool has_st = opt_tensor_val(env, info[3], "infonce: scale", &st);
  bool has_lc = opt_tensor_val(env, info[7], "infonce: lseCols", &lc);
  l2c_infonce_args args{};
  args.a = &a;
  args.b = &b;
  args.scale = has_st ? 0.0 : number_arg(env, info[2], "infonce: scale");
  args.scale_tensor = has_st ? &st : nullptr;
  args.symmetric = info[4].ToBoolean().Value() ? 1 : 0;
  args.loss = &loss;
  args.lse_rows = &lr;
  args.lse_cols = has_lc ? &lc : nullptr;
  check(env, l2c_infonce_forward(&args));
  return env.Undefined();
}

// infonceBackward(a, b, scale: number, scaleTensor | null, symmetric: boolean, lseRows,
//                 lseCols | null, gradLoss: number, gradLossTensor | null, da, db, dScale)
static Napi::Value InfonceBackward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor a = tensor_val(env, info[0], "infonce_backward: a");
  l2c_tensor b = tensor_val(env, info[1], "infonce_backward: b");
  l2c_tensor st{}, lc{}, gt{};
  bool has_st = opt_tensor_val(env, info[3], "infonce_backward: scale", &st);
  l2c_tensor lr = tensor_val(env, info[5], "infonce_backward: lseRows");
  bool has_lc = opt_tensor_val(env, info[6], "infonce_backward: lseCols", &lc);
  bool has_gt = opt_tensor_val(env, info[8], "infonce_backward: gradLoss", &gt);
  l2c_tensor da = tensor_val(env, info[9], "infonce_backward: da");
  l2c_tensor db = tensor_val(env, info[10], "infonce_backward: db");
  l2c_tensor ds = tensor_val(env, info[11], "infonce_backward: dScale");
  l2c_infonce_backward_args args{};
  args.a = &a;
  args.b = &b;
  args.scale = has_st ? 0.0 : number_arg(env, info[2], "infonce_backward: scale");
  args.scale_tensor = has_st ? &st : nullptr;
  args.symmetric = info[4].ToBoolean().Value() ? 1 : 0;
  args.lse_rows = &lr;
  args.lse_cols = has_lc ? &lc : nullptr;
  args.grad_loss = has_gt ? 0.0 : number_arg(env, info[7], "infonce_backward: gradLoss");
  args.grad_loss_tensor = has_gt ? &gt : nullptr;
  args.da = &da;
  args.db = &db;
  args.dscale = &ds;
  check(env, l2c_infonce_backward(&args));
  return env.Undefined();
}

void init_infonce(Napi::Env env, Napi::Object exports) {
  exports.Set("infonceForward", Napi::Function::New(env, InfonceForward));
  exports.Set("infonceBackward", Napi::Function::New(env, InfonceBackward));
}

}  // namespace l2c_napi
