// api_attention.cc: the C ABI entries of the attention kernels (l2c_attention.h): argument checks with
// typed errors naming the argument, then dispatch to the backend.
#include "api_util.h"
#include "backend.h"
