// infonce.h: the CPU InfoNCE / CLIP loss kernels (infonce.cc), called by
// core/api_infonce.cc once the arguments are validated. Semantics: l2c_infonce.h.
#pragma once
#include <cstdint>

#include "infonce_params.h"

namespace l2c {
namespace cpu {

using l2c::InfonceParams;  // core/infonce_params.h (shared with the CUDA backend)

void infonce_forward(const InfonceParams &p);
void infonce_backward(const InfonceParams &p);

}  // namespace cpu
}  // namespace l2c
