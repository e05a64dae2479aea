// storage.cc: Storage, the JS handle of a block of native memory (CPU or CUDA).
// CPU memory is exposed zero-copy as an external ArrayBuffer, made with the block so
// that V8 accounts the memory as external from the start; free() detaches that buffer
// (its views read as empty) and frees at once; the GC finalizers are only a safety net.
#include <cmath>
#include <string>

#include "addon.h"

namespace l2c_napi {

Block::~Block() {
  inflight = 0;
  release();
}

void Block::release() {
  if (inflight > 0) {
    release_pending = true;
    return;
  }
  release_pending = false;
  if (!ptr) return;
  l2c_free(device, ptr);
  ptr = nullptr;
}

Napi::Function Storage::Init(Napi::Env env) {
  return DefineClass(env, "Storage",
                     {InstanceMethod("arrayBuffer", &Storage::ArrayBuffer),
                      InstanceMethod("free", &Storage::Free),
                      InstanceAccessor("bytes", &Storage::GetBytes, nullptr),
                      InstanceAccessor("freed", &Storage::GetFreed, nullptr)});
}

// new Storage(deviceType, deviceIndex, bytes)
Storage::Storage(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Storage>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw_error(env, "INVALID_ARGUMENT", "Storage(deviceType, deviceIndex, bytes): numbers expected");
  double bytes = info[2].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0) || bytes > 9007199254740991.0 || std::floor(bytes) != bytes)
    throw_error(env, "INVALID_ARGUMENT", "Storage: bytes must be a non-negative integer (got " + std::to_string(bytes) + ")");
  auto b = std::make_shared<Block>();
  b->device.type = (l2c_device_type)info[0].As<Napi::Number>().Int32Value();
  b->device.index = info[1].As<Napi::Number>().Int32Value();
  b->bytes = (size_t)bytes;
  check(env, l2c_alloc(b->device, b->bytes, &b->ptr));
  block_ = std::move(b);
  if (block_->device.type == L2C_CPU && block_->bytes) {
    auto *hint = new std::shared_ptr<Block>(block_);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, block_->ptr, block_->bytes,
        [](Napi::Env, void *, std::shared_ptr<Block> *h) { delete h; }, hint);
    view_ = Napi::Persistent(ab.As<Napi::Object>());
  }
}

Storage::~Storage() { view_.Reset(); }

Storage *Storage::FromValue(Napi::Value v, const char *what) {
  Napi::Env env = v.Env();
  AddonData *data = env.GetInstanceData<AddonData>();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data->storage_ctor.Value()))
    throw_error(env, "INVALID_ARGUMENT", std::string(what) + ": not a tensor storage");
  Storage *s = Napi::ObjectWrap<Storage>::Unwrap(v.As<Napi::Object>());
  if (s->freed()) throw_error(env, "DISPOSED", std::string(what) + ": the tensor was disposed");
  return s;
}

Napi::Value Storage::ArrayBuffer(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (freed()) throw_error(env, "DISPOSED", "arrayBuffer: the tensor was disposed");
  if (block_->device.type != L2C_CPU)
    throw_error(env, "DEVICE_MISMATCH", "arrayBuffer: only CPU memory can be viewed from JS; copy it with to('cpu')");
  if (view_.IsEmpty()) return Napi::ArrayBuffer::New(env, 0);  // zero bytes
  return view_.Value();
}

void Storage::detach_view() {
  if (view_.IsEmpty()) return;
  Napi::Value v = view_.Value();
  if (!v.IsEmpty() && v.IsArrayBuffer()) napi_detach_arraybuffer(Env(), v);
  view_.Reset();
}

Napi::Value Storage::Free(const Napi::CallbackInfo &info) {
  if (!released_) {
    detach_view();  // no JS view may outlive the memory
    released_ = true;
    block_->release();
  }
  return info.Env().Undefined();
}

Napi::Value Storage::GetBytes(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), (double)block_->bytes);
}
Napi::Value Storage::GetFreed(const Napi::CallbackInfo &info) {
  return Napi::Boolean::New(info.Env(), freed());
}

}  // namespace l2c_napi
