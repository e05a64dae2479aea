// cuda_stub_lora.cc: the l2c::cuda lora functions of core/lora_cuda.h for builds without
// CUDA (no nvcc, or LLM2CLIP_CUDA=off): every call throws DEVICE_UNAVAILABLE. Linked
// instead of native/cuda/lora.cu; plain C++.
#include <string>

#include "common.h"
#include "lora_cuda.h"

namespace l2c {
namespace cuda {
namespace {

[[noreturn]] void unavailable(const char *what) {
  fail(L2C_DEVICE_UNAVAILABLE,
       std::string("llm2clip was built without CUDA (") + what +
           "): rebuild on a machine with the CUDA toolkit (nvcc) and LLM2CLIP_CUDA=auto or on");
}

}  // namespace

void lora_forward(int, const LoraDims &, const void *, const void *, const void *, const void *, const void *,
                  void *) {
  unavailable("lora_forward");
}
void lora_backward(int, const LoraDims &, const void *, const void *, const void *, const void *, const void *,
                   void *, void *, void *) {
  unavailable("lora_backward");
}
void lora_merge(int, const LoraDims &, void *, const void *, const void *, int) { unavailable("lora_merge"); }

}  // namespace cuda
}  // namespace l2c
