// api_train.cc: the C ABI entries of the train kernels (l2c_train.h): argument checks with
// typed errors naming the argument, then dispatch to the backend.
#include "api_util.h"
#include "backend.h"
