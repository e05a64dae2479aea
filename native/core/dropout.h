// dropout.h: the dropout mask, shared by every op that drops (ops.dropout, the LoRA path
// of loraLinear) and by CPU and CUDA alike. Element i of a tensor dropped with seed s
// and probability p is kept iff its Philox word (philox.h, counter i, key s), read as a
// 32-bit unsigned integer, is >= threshold(p) = floor(p * 2^32) (p in [0, 1)). Integer
// comparison only, so CPU and GPU agree exactly; kept elements are scaled by 1/(1-p).
// The backward regenerates the mask from (seed, i): nothing is stored.
#pragma once
#include <cstdint>

#include "philox.h"

namespace l2c {
namespace dropout {

// floor(p * 2^32), p in [0, 1).
L2C_HD uint32_t threshold(float p) {
  double t = (double)p * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)t;
}

// The factor kept elements are multiplied by: 1/(1-p) rounded once to float32 (p as
// float32). Every dropping op uses this, so their outputs agree bit for bit.
L2C_HD float scale(float p) { return (float)(1.0 / (1.0 - (double)p)); }

L2C_HD bool keep(uint64_t seed, uint64_t index, uint32_t thresh) {
  return philox::word(index, seed) >= thresh;
}

// Four consecutive elements 4c..4c+3 from one Philox call: bit k set = element 4c+k kept.
L2C_HD unsigned keep4(uint64_t seed, uint64_t c, uint32_t thresh) {
  philox::u32x4 w = philox::philox4x32_10(c, seed);
  return (unsigned)(w.v[0] >= thresh) | (unsigned)(w.v[1] >= thresh) << 1 |
         (unsigned)(w.v[2] >= thresh) << 2 | (unsigned)(w.v[3] >= thresh) << 3;
}

}  // namespace dropout
}  // namespace l2c
