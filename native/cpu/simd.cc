// simd.cc: the level query and float32 <-> storage row conversion of simd.h.
#include "simd.h"

#include <cstring>

#include "half.h"
#include "matmul_kernels.h"

namespace l2c {
namespace cpu {

const char *isa_name();

Level level() {
  const char *n = mm::active_kernels().name;
  if (std::strcmp(n, "avx512") == 0) return Level::avx512;
  if (std::strcmp(n, "avx2") == 0) return Level::avx2;
  return Level::generic;
}

void load_f32(const void *src, l2c_dtype dt, int64_t n, float *dst) {
  if (dt == L2C_FLOAT32) {
    std::memcpy(dst, src, (size_t)n * 4);
    return;
  }
  const uint16_t *s = static_cast<const uint16_t *>(src);
  if (dt == L2C_BFLOAT16)
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
  else
    for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
}

void store_f32(const float *src, void *dst, l2c_dtype dt, int64_t n) {
  if (dt == L2C_FLOAT32) {
    std::memcpy(dst, src, (size_t)n * 4);
    return;
  }
  mm::active_kernels().store_half(src, dst, dt, n);
}

}  // namespace cpu
}  // namespace l2c
