// api_layers.cc: the C ABI entries of the layers kernels (l2c_layers.h): argument checks with
// typed errors naming the argument, then dispatch to the backend.
#include "api_util.h"
#include "backend.h"
