// cuda_stub_attention.cc: the CUDA attention entries (core/attention_cuda.h) for builds
// without CUDA: DEVICE_UNAVAILABLE, as core/cuda_stub.cc does for the rest. Plain C++.
#include <string>

#include "attention_cuda.h"
#include "common.h"

namespace l2c {
namespace cuda {
namespace {

[[noreturn]] void unavailable(const char *what) {
  fail(L2C_DEVICE_UNAVAILABLE,
       std::string("llm2clip was built without CUDA (") + what +
           "): rebuild on a machine with the CUDA toolkit (nvcc) and LLM2CLIP_CUDA=auto or on");
}

}  // namespace

void attention_forward(int, const AttentionParams &, void *, float *) { unavailable("attention_forward"); }
void attention_backward(int, const AttentionParams &, const void *, const void *, const float *, void *,
                        void *, void *) {
  unavailable("attention_backward");
}

}  // namespace cuda
}  // namespace l2c
