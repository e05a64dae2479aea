// cuda_stub_layers.cc: the l2c::cuda::layers functions of layers_cuda.h for builds
// without CUDA (no nvcc, or LLM2CLIP_CUDA=off): every call throws DEVICE_UNAVAILABLE.
// Linked instead of native/cuda/layers*.cu; plain C++. (The C ABI checks the device
// first, so these are reached only by a direct call.)
#include <string>

#include "layers_cuda.h"

namespace l2c {
namespace cuda {
namespace layers {
namespace {

[[noreturn]] void unavailable(const char *what) {
  fail(L2C_DEVICE_UNAVAILABLE,
       std::string("llm2clip was built without CUDA (") + what +
           "): rebuild on a machine with the CUDA toolkit (nvcc) and LLM2CLIP_CUDA=auto or on");
}

}  // namespace

void binary(int, int, const l2c_tensor &, const l2c_tensor *, const l2c_tensor &, float) { unavailable("binary"); }
void sum(int, const l2c_tensor &, uint32_t, double, const l2c_tensor &) { unavailable("sum"); }
void mul_backward(int, const l2c_tensor &, const l2c_tensor &, const l2c_tensor &, const l2c_tensor *,
                  const l2c_tensor *) {
  unavailable("mul_backward");
}
void rms_norm_forward(int, const void *, l2c_dtype, const void *, l2c_dtype, void *, float *, int64_t, int64_t,
                      float) {
  unavailable("rms_norm");
}
void rms_norm_backward(int, const void *, const void *, l2c_dtype, const void *, l2c_dtype, const float *, void *,
                       float *, int64_t, int64_t) {
  unavailable("rms_norm_backward");
}
void layer_norm_forward(int, const void *, l2c_dtype, const void *, l2c_dtype, const void *, l2c_dtype, void *,
                        float *, float *, int64_t, int64_t, float) {
  unavailable("layer_norm");
}
void layer_norm_backward(int, const void *, const void *, l2c_dtype, const void *, l2c_dtype, const float *,
                         const float *, void *, float *, float *, int64_t, int64_t) {
  unavailable("layer_norm_backward");
}
void l2_normalize_forward(int, const void *, l2c_dtype, void *, int64_t, int64_t, float) {
  unavailable("l2_normalize");
}
void l2_normalize_backward(int, const void *, const void *, l2c_dtype, void *, int64_t, int64_t, float) {
  unavailable("l2_normalize_backward");
}
void softmax_forward(int, const void *, l2c_dtype, void *, int64_t, int64_t) { unavailable("softmax"); }
void softmax_backward(int, const void *, const void *, l2c_dtype, void *, int64_t, int64_t) {
  unavailable("softmax_backward");
}
void masked_mean_pool_forward(int, const void *, l2c_dtype, const void *, l2c_dtype, void *, int64_t, int64_t,
                              int64_t) {
  unavailable("masked_mean_pool");
}
void masked_mean_pool_backward(int, const void *, l2c_dtype, const void *, l2c_dtype, void *, int64_t, int64_t,
                               int64_t) {
  unavailable("masked_mean_pool_backward");
}
void activation_forward(int, int, const void *, l2c_dtype, void *, int64_t) { unavailable("activation"); }
void activation_backward(int, int, const void *, const void *, l2c_dtype, void *, int64_t) {
  unavailable("activation_backward");
}
void swiglu_forward(int, const void *, const void *, l2c_dtype, void *, int64_t) { unavailable("swiglu"); }
void swiglu_backward(int, const void *, const void *, const void *, l2c_dtype, void *, void *, int64_t) {
  unavailable("swiglu_backward");
}
void dropout(int, const void *, l2c_dtype, void *, int64_t, float, uint64_t) { unavailable("dropout"); }
void rope(int, const void *, l2c_dtype, const int32_t *, bool, const double *, void *, int64_t, int64_t, int64_t,
          int64_t, int) {
  unavailable("rope");
}

}  // namespace layers
}  // namespace cuda
}  // namespace l2c
