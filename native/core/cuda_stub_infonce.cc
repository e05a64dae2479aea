// cuda_stub_infonce.cc: the l2c::cuda infonce functions (infonce_cuda.h) for builds
// without CUDA: DEVICE_UNAVAILABLE, as core/cuda_stub.cc does for the rest. Plain C++.
#include <string>

#include "common.h"
#include "infonce_cuda.h"

namespace l2c {
namespace cuda {
namespace {

[[noreturn]] void unavailable(const char *what) {
  fail(L2C_DEVICE_UNAVAILABLE,
       std::string("llm2clip was built without CUDA (") + what +
           "): rebuild on a machine with the CUDA toolkit (nvcc) and LLM2CLIP_CUDA=auto or on");
}

}  // namespace

void infonce_forward(int, const InfonceParams &) { unavailable("infonce_forward"); }
void infonce_backward(int, const InfonceParams &) { unavailable("infonce_backward"); }

}  // namespace cuda
}  // namespace l2c
