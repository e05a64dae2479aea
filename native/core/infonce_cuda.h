// infonce_cuda.h: the CUDA InfoNCE / CLIP loss kernels (native/cuda/infonce.cu), called by
// core/api_infonce.cc once the arguments are validated; semantics as the CPU ones
// (l2c_infonce.h). Every pointer of `p` is device memory on `device`; nothing is read
// back to the host (the loss and dscale stay on the device). Builds without CUDA link
// core/cuda_stub_infonce.cc instead (DEVICE_UNAVAILABLE).
#pragma once
#include "infonce_params.h"

namespace l2c {
namespace cuda {

void infonce_forward(int device, const InfonceParams &p);
void infonce_backward(int device, const InfonceParams &p);

}  // namespace cuda
}  // namespace l2c
