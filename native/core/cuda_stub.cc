// cuda_stub.cc: the l2c::cuda functions of backend.h for builds without CUDA (no nvcc,
// or LLM2CLIP_CUDA=off): compiled() is false, device_count() is 0, and every other call
// throws DEVICE_UNAVAILABLE. Linked instead of native/cuda/*.cu; plain C++.
#include <string>

#include "backend.h"

namespace l2c {
namespace cuda {
namespace {

[[noreturn]] void unavailable(const char *what) {
  fail(L2C_DEVICE_UNAVAILABLE,
       std::string("llm2clip was built without CUDA (") + what +
           "): rebuild on a machine with the CUDA toolkit (nvcc) and LLM2CLIP_CUDA=auto or on");
}

}  // namespace

bool compiled() { return false; }
int device_count() { return 0; }
void device_name(int, char *, size_t) { unavailable("device_name"); }
void *alloc(int, size_t) { unavailable("alloc"); }
void free(int, void *) { unavailable("free"); }
l2c_memory_stats memory_stats(int) { unavailable("memory_stats"); }
void empty_cache(int) { unavailable("empty_cache"); }
void synchronize(int) { unavailable("synchronize"); }
void copy_h2d(int, void *, const void *, size_t) { unavailable("copy_h2d"); }
void copy_d2h(int, void *, const void *, size_t) { unavailable("copy_d2h"); }
void copy_d2d(int, void *, int, const void *, size_t) { unavailable("copy_d2d"); }
void cast(const l2c_tensor &, const l2c_tensor &) { unavailable("cast"); }
void fill(const l2c_tensor &, double) { unavailable("fill"); }
void random(const l2c_tensor &, l2c_random_kind, uint64_t, double, double) { unavailable("random"); }
void matmul(int, const MatmulParams &) { unavailable("matmul"); }

}  // namespace cuda
}  // namespace l2c
