// attention.cc: CPU kernels: fused bidirectional / causal attention (flash-style), forward and backward.
#include "backend.h"
