// lora.cc: CPU kernels: linear layers with a LoRA adapter fused in, forward and backward; merge / unmerge.
#include "backend.h"
