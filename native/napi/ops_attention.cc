// ops_attention.cc: Node-API glue of the attention kernels: unpacks tensors ([storage, dtype, shape]
// arrays, see tensor_val) and options, calls the C ABI, throws typed errors.
#include "addon.h"

namespace l2c_napi {

void init_attention(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
}

}  // namespace l2c_napi
