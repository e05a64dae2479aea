// infonce.cc: CPU kernels: the InfoNCE / CLIP contrastive loss without the N x M logits, forward and backward.
#include "backend.h"
