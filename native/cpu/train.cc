// train.cc: CPU kernels: embedding, chunked cross-entropy fused with the output projection, adamw with clipping, layout ops, patchify.
#include "backend.h"
