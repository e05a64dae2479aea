// ops.cc: the tensor ops of the addon. Each takes tensors as (storage, dtype, shape)
// triples, builds l2c_tensor descriptors and calls one C ABI entry. copyAsync runs
// off the JS thread and resolves a Promise (Tensor#data()).
#include <string>

#include "addon.h"

namespace l2c_napi {

// Reads a tensor from (storage, dtype, shape) values.
static l2c_tensor tensor_from(Napi::Env env, Napi::Value sv, Napi::Value dv, Napi::Value shv, const char *what) {
  Storage *s = Storage::FromValue(sv, what);
  l2c_tensor t{};
  auto b = s->block();
  t.data = b->ptr;
  t.device = b->device;
  if (!dv.IsNumber()) throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": dtype must be a number");
  t.dtype = (l2c_dtype)dv.As<Napi::Number>().Int32Value();
  size_t esize = l2c_dtype_size(t.dtype);
  if (!esize) throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": unknown dtype");
  if (!shv.IsArray()) throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": shape must be an array");
  Napi::Array shape = shv.As<Napi::Array>();
  if (shape.Length() > L2C_MAX_DIMS)
    throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": more than " + std::to_string(L2C_MAX_DIMS) + " dimensions");
  t.ndim = (int32_t)shape.Length();
  double n = 1;
  for (uint32_t d = 0; d < shape.Length(); d++) {
    Napi::Value dimv = shape.Get(d);
    double v = dimv.IsNumber() ? dimv.As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0) || v > 9007199254740991.0 || v != (double)(int64_t)v)
      throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": bad dimension " + std::to_string(v));
    t.shape[d] = (int64_t)v;
    n *= v;
  }
  // Memory safety: the descriptor must fit inside its storage.
  if (n * (double)esize > (double)b->bytes)
    throw_error(env, "SHAPE_MISMATCH", std::string(what) + ": shape needs " + std::to_string((uint64_t)(n * esize)) +
                                           " bytes but the storage holds " + std::to_string(b->bytes));
  return t;
}

l2c_tensor tensor_arg(const Napi::CallbackInfo &info, size_t i, const char *what) {
  Napi::Env env = info.Env();
  if (info.Length() < i + 3) throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": missing");
  return tensor_from(env, info[i], info[i + 1], info[i + 2], what);
}

l2c_tensor tensor_val(Napi::Env env, Napi::Value v, const char *what) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3)
    throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": expected a tensor (storage, dtype, shape)");
  Napi::Array a = v.As<Napi::Array>();
  return tensor_from(env, a.Get(0u), a.Get(1u), a.Get(2u), what);
}

bool opt_tensor_val(Napi::Env env, Napi::Value v, const char *what, l2c_tensor *out) {
  if (v.IsNull() || v.IsUndefined()) return false;
  *out = tensor_val(env, v, what);
  return true;
}

// copy(dst, dt, shape, src, dt, shape)
static Napi::Value Copy(const Napi::CallbackInfo &info) {
  l2c_tensor dst = tensor_arg(info, 0, "copy: dst"), src = tensor_arg(info, 3, "copy: src");
  check(info.Env(), l2c_copy(&dst, &src));
  return info.Env().Undefined();
}

// cast(dst, dt, shape, src, dt, shape)
static Napi::Value Cast(const Napi::CallbackInfo &info) {
  l2c_tensor dst = tensor_arg(info, 0, "cast: dst"), src = tensor_arg(info, 3, "cast: src");
  check(info.Env(), l2c_cast(&dst, &src));
  return info.Env().Undefined();
}

// fill(dst, dt, shape, value)
static Napi::Value Fill(const Napi::CallbackInfo &info) {
  l2c_tensor dst = tensor_arg(info, 0, "fill: dst");
  check(info.Env(), l2c_fill(&dst, info[3].As<Napi::Number>().DoubleValue()));
  return info.Env().Undefined();
}

// random(dst, dt, shape, kind, seed: bigint, a, b)
static Napi::Value Random(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_tensor dst = tensor_arg(info, 0, "random: dst");
  if (!info[4].IsBigInt()) throw_error(env, "INVALID_ARGUMENT", "random: seed must be a bigint");
  bool lossless;
  uint64_t seed = info[4].As<Napi::BigInt>().Uint64Value(&lossless);
  check(env, l2c_random(&dst, (l2c_random_kind)info[3].As<Napi::Number>().Int32Value(), seed,
                        info[5].As<Napi::Number>().DoubleValue(), info[6].As<Napi::Number>().DoubleValue()));
  return env.Undefined();
}

// matmul(a, dt, shape, b, dt, shape, out, dt, shape, transA, transB)
static Napi::Value Matmul(const Napi::CallbackInfo &info) {
  l2c_tensor a = tensor_arg(info, 0, "matmul: a"), b = tensor_arg(info, 3, "matmul: b"),
             o = tensor_arg(info, 6, "matmul: out");
  l2c_matmul_args args{&a, &b, &o, info[9].ToBoolean().Value() ? 1 : 0, info[10].ToBoolean().Value() ? 1 : 0};
  check(info.Env(), l2c_matmul(&args));
  return info.Env().Undefined();
}

// Copies on a worker thread; keeps both blocks alive and defers their release.
class CopyWorker : public Napi::AsyncWorker {
 public:
  CopyWorker(Napi::Env env, std::shared_ptr<Block> db, l2c_tensor dst, std::shared_ptr<Block> sb, l2c_tensor src)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), db_(db), sb_(sb), dst_(dst), src_(src) {
    db_->inflight++;
    sb_->inflight++;
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    status_ = l2c_copy(&dst_, &src_);
    if (status_ != L2C_OK) message_ = l2c_last_error();  // thread-local: read it here
  }
  void OnOK() override {
    done();
    if (status_ == L2C_OK) {
      deferred_.Resolve(Env().Undefined());
      return;
    }
    try {
      throw_error(Env(), l2c_status_name(status_), message_);
    } catch (const Napi::Error &e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error &e) override {
    done();
    deferred_.Reject(e.Value());
  }

 private:
  void done() {
    for (auto *b : {db_.get(), sb_.get()})
      if (--b->inflight == 0 && b->release_pending) b->release();
  }
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Block> db_, sb_;
  l2c_tensor dst_, src_;
  l2c_status status_ = L2C_OK;
  std::string message_;
};

// copyAsync(dst, dt, shape, src, dt, shape) -> Promise<void>
static Napi::Value CopyAsync(const Napi::CallbackInfo &info) {
  l2c_tensor dst = tensor_arg(info, 0, "copy: dst"), src = tensor_arg(info, 3, "copy: src");
  auto *w = new CopyWorker(info.Env(), Storage::FromValue(info[0], "copy: dst")->block(), dst,
                           Storage::FromValue(info[3], "copy: src")->block(), src);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

void init_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("copy", Napi::Function::New(env, Copy));
  exports.Set("copyAsync", Napi::Function::New(env, CopyAsync));
  exports.Set("cast", Napi::Function::New(env, Cast));
  exports.Set("fill", Napi::Function::New(env, Fill));
  exports.Set("random", Napi::Function::New(env, Random));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
}

}  // namespace l2c_napi
