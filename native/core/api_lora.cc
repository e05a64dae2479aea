// api_lora.cc: the C ABI entries of the lora kernels (l2c_lora.h): argument checks with
// typed errors naming the argument, then dispatch to the backend.
#include "api_util.h"
#include "backend.h"
