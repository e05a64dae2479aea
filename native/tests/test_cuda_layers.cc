#include "test_cuda_util.h"
