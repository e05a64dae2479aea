// cuda_stub_train.cc: the l2c::cuda functions of train_cuda.h for builds without CUDA:
// every call throws DEVICE_UNAVAILABLE (like cuda_stub.cc). Plain C++.
#include <string>

#include "common.h"
#include "train_cuda.h"

namespace l2c {
namespace cuda {
namespace {

[[noreturn]] void unavailable(const char *what) {
  fail(L2C_DEVICE_UNAVAILABLE,
       std::string("llm2clip was built without CUDA (") + what +
           "): rebuild on a machine with the CUDA toolkit (nvcc) and LLM2CLIP_CUDA=auto or on");
}

}  // namespace

void embedding_forward(int, const l2c_tensor &, const l2c_tensor &, const l2c_tensor &) {
  unavailable("embedding");
}
void embedding_backward(int, const l2c_tensor &, const l2c_tensor &, const l2c_tensor &, int64_t) {
  unavailable("embedding_backward");
}
void cross_entropy_forward(int, const CrossEntropyParams &) { unavailable("cross_entropy"); }
void cross_entropy_backward(int, const CrossEntropyParams &) { unavailable("cross_entropy_backward"); }
void set_cross_entropy_block_rows(int64_t) {}
double grad_norm(int, const std::vector<const l2c_tensor *> &) { unavailable("grad_norm"); }
double adamw(int, const std::vector<AdamWParam> &, const AdamWHyper &, bool *) { unavailable("adamw"); }
void permute(int, const l2c_tensor &, const l2c_tensor &, const int32_t *) { unavailable("permute"); }
void concat(int, const std::vector<const l2c_tensor *> &, const l2c_tensor &, int, bool split) {
  unavailable(split ? "split" : "concat");
}
void slice_forward(int, const l2c_tensor &, const l2c_tensor &, int, int64_t) { unavailable("slice"); }
void slice_backward(int, const l2c_tensor &, const l2c_tensor &, int, int64_t) {
  unavailable("slice_backward");
}
void patchify(int, const l2c_tensor &, const l2c_tensor &, int64_t, bool backward) {
  unavailable(backward ? "unpatchify" : "patchify");
}

}  // namespace cuda
}  // namespace l2c
