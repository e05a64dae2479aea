// addon.cc: the module's entry (NODE_API_MODULE, context-aware) and the small
// functions: error factory, threads, CPU ISA, memory stats, CUDA queries.
#include "addon.h"

#include <string>

#ifndef _WIN32
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace l2c_napi {

void throw_error(Napi::Env env, const char *code, const std::string &message) {
  AddonData *data = env.GetInstanceData<AddonData>();
  if (data && !data->error_factory.IsEmpty()) {
    Napi::Value err = data->error_factory.Call({Napi::String::New(env, code), Napi::String::New(env, message)});
    throw Napi::Error(env, err);
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

void throw_status(Napi::Env env, l2c_status s) {
  throw_error(env, l2c_status_name(s), l2c_last_error());
}

static l2c_device device_arg(const Napi::CallbackInfo &info, size_t i) {
  l2c_device d;
  d.type = (l2c_device_type)info[i].As<Napi::Number>().Int32Value();
  d.index = info[i + 1].As<Napi::Number>().Int32Value();
  return d;
}

static Napi::Value SetErrorFactory(const Napi::CallbackInfo &info) {
  AddonData *data = info.Env().GetInstanceData<AddonData>();
  data->error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Value NumThreads(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), l2c_num_threads());
}
static Napi::Value SetNumThreads(const Napi::CallbackInfo &info) {
  check(info.Env(), l2c_set_num_threads(info[0].As<Napi::Number>().Int32Value()));
  return info.Env().Undefined();
}
static Napi::Value CpuIsa(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), l2c_cpu_isa());
}
static Napi::Value SetCpuIsa(const Napi::CallbackInfo &info) {
  std::string s = info[0].As<Napi::String>().Utf8Value();
  check(info.Env(), l2c_set_cpu_isa(s.c_str()));
  return info.Env().Undefined();
}

static Napi::Value MemoryStats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  l2c_memory_stats s;
  check(env, l2c_memory_stats_get(device_arg(info, 0), &s));
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocatedBytes", Napi::Number::New(env, (double)s.allocated_bytes));
  o.Set("peakAllocatedBytes", Napi::Number::New(env, (double)s.peak_allocated_bytes));
  o.Set("reservedBytes", Napi::Number::New(env, (double)s.reserved_bytes));
  o.Set("numAllocs", Napi::Number::New(env, (double)s.num_allocs));
  o.Set("numDeviceMallocs", Napi::Number::New(env, (double)s.num_device_mallocs));
  return o;
}
static Napi::Value EmptyCache(const Napi::CallbackInfo &info) {
  check(info.Env(), l2c_empty_cache(device_arg(info, 0)));
  return info.Env().Undefined();
}
static Napi::Value Synchronize(const Napi::CallbackInfo &info) {
  check(info.Env(), l2c_synchronize(device_arg(info, 0)));
  return info.Env().Undefined();
}
static Napi::Value CudaCompiled(const Napi::CallbackInfo &info) {
  return Napi::Boolean::New(info.Env(), l2c_cuda_compiled() != 0);
}
static Napi::Value CudaDeviceCount(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), l2c_cuda_device_count());
}
static Napi::Value CudaDeviceName(const Napi::CallbackInfo &info) {
  char buf[256];
  check(info.Env(), l2c_cuda_device_name(info[0].As<Napi::Number>().Int32Value(), buf, sizeof buf));
  return Napi::String::New(info.Env(), buf);
}
static Napi::Value AbiVersion(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), l2c_abi_version());
}

// mapFile(path): the whole file memory-mapped as an ArrayBuffer (private, copy-on-write:
// writes through it never reach the file), unmapped when the buffer is collected. The
// pages are read from disk as they are touched, so a file larger than RAM can be used.
static Napi::Value MapFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "INVALID_ARGUMENT", "mapFile(path): path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
#ifdef _WIN32
  throw_error(env, "IO_ERROR", "mapFile: memory mapping is not supported on Windows");
  return env.Undefined();
#else
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error(env, "IO_ERROR", "mapFile: cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_error(env, "IO_ERROR", "mapFile: " + path + " is not a regular file");
  }
  const size_t len = (size_t)st.st_size;
  if (len == 0) {
    ::close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  void *p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) throw_error(env, "IO_ERROR", "mapFile: cannot map " + path + ": " + std::strerror(err));
  return Napi::ArrayBuffer::New(env, p, len, [len](Napi::Env, void *data) { ::munmap(data, len); });
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  AddonData *data = new AddonData();
  env.SetInstanceData(data);  // deleted with the environment
  data->storage_ctor = Napi::Persistent(Storage::Init(env));
  exports.Set("Storage", data->storage_ctor.Value());
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory));
  exports.Set("numThreads", Napi::Function::New(env, NumThreads));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("cpuIsa", Napi::Function::New(env, CpuIsa));
  exports.Set("setCpuIsa", Napi::Function::New(env, SetCpuIsa));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("cudaCompiled", Napi::Function::New(env, CudaCompiled));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
  exports.Set("cudaDeviceName", Napi::Function::New(env, CudaDeviceName));
  exports.Set("abiVersion", Napi::Function::New(env, AbiVersion));
  exports.Set("mapFile", Napi::Function::New(env, MapFile));
  init_ops(env, exports);
  init_attention(env, exports);
  init_lora(env, exports);
  init_infonce(env, exports);
  init_layers(env, exports);
  init_train(env, exports);
  return exports;
}

}  // namespace l2c_napi

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return l2c_napi::Init(env, exports); }
NODE_API_MODULE(llm2clip, InitModule)
