// addon.h: shared pieces of the Node-API glue. The glue only unpacks arguments, calls
// the C ABI and maps its status to a thrown Llm2ClipError (through the factory that the
// TypeScript side registers); all policy lives below (native core) or above (src/).
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

#include "llm2clip.h"

namespace l2c_napi {

// Per-environment state: the addon is context-aware (one instance per worker_thread).
struct AddonData {
  Napi::FunctionReference storage_ctor;
  Napi::FunctionReference error_factory;  // (code, message) => Error
};

// Throws a JS error with code (e.g. "SHAPE_MISMATCH") and message.
[[noreturn]] void throw_error(Napi::Env env, const char *code, const std::string &message);
// Throws for a failed C ABI call (status + l2c_last_error()).
[[noreturn]] void throw_status(Napi::Env env, l2c_status s);
inline void check(Napi::Env env, l2c_status s) {
  if (s != L2C_OK) throw_status(env, s);
}

// A block of native memory. Owned by a Storage (and, for CPU memory, also by the
// external ArrayBuffer that views it); freed by Storage#free() at once, or when the
// last owner goes. Freeing waits for in-flight async operations on it.
// V8 accounts CPU blocks as the external ArrayBuffer's backing store (made with the
// block, so it counts from the start); nothing is adjusted by hand.
struct Block {
  l2c_device device;
  void *ptr = nullptr;
  size_t bytes = 0;
  int inflight = 0;             // async workers using ptr (JS thread only)
  bool release_pending = false; // free() asked while in flight
  ~Block();
  void release();               // frees now (JS thread)
};

class Storage : public Napi::ObjectWrap<Storage> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Storage(const Napi::CallbackInfo &info);
  ~Storage() override;
  std::shared_ptr<Block> block() const { return block_; }
  bool freed() const { return released_; }
  static Storage *FromValue(Napi::Value v, const char *what);

 private:
  Napi::Value ArrayBuffer(const Napi::CallbackInfo &info);
  Napi::Value Free(const Napi::CallbackInfo &info);
  Napi::Value GetBytes(const Napi::CallbackInfo &info);
  Napi::Value GetFreed(const Napi::CallbackInfo &info);
  void detach_view();
  std::shared_ptr<Block> block_;
  Napi::ObjectReference view_;  // the external ArrayBuffer over CPU memory, detached on free
  bool released_ = false;
};

// Reads a tensor given as (storage, dtype, shape) at info[i..i+2].
l2c_tensor tensor_arg(const Napi::CallbackInfo &info, size_t i, const char *what);

// Reads a tensor given as one JS array [storage, dtype, shape] (Tensor#nat()).
l2c_tensor tensor_val(Napi::Env env, Napi::Value v, const char *what);
// The same, where null / undefined means "absent" (returns false, *out untouched).
bool opt_tensor_val(Napi::Env env, Napi::Value v, const char *what, l2c_tensor *out);

void init_ops(Napi::Env env, Napi::Object exports);
// The kernel families (native/napi/ops_<family>.cc), one export each per op.
void init_attention(Napi::Env env, Napi::Object exports);
void init_lora(Napi::Env env, Napi::Object exports);
void init_infonce(Napi::Env env, Napi::Object exports);
void init_layers(Napi::Env env, Napi::Object exports);
void init_train(Napi::Env env, Napi::Object exports);

}  // namespace l2c_napi
