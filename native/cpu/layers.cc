// layers.cc: CPU kernels: elementwise ops, norms, rope, activations, softmax, dropout, reductions, pooling.
#include "backend.h"
