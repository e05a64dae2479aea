// ops_lora.cc: Node-API glue of the lora kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val) and options, calls the C ABI, throws typed errors.
#include "addon.h"

namespace l2c_napi {

void init_lora(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
}

}  // namespace l2c_napi
