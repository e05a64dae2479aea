// api_infonce.cc: the C ABI entries of the infonce kernels (l2c_infonce.h): argument checks with
// typed errors naming the argument, then dispatch to the backend.
#include "api_util.h"
#include "backend.h"
