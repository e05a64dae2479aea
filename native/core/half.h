// half.h: bfloat16 and float16 <-> float32 conversions, bit-exact and identical on the
// CPU and in CUDA kernels (pure integer arithmetic on the bit patterns).
// float -> 16-bit rounds to nearest even and keeps NaN (quieted) and +-Inf; float16
// overflow rounds to Inf, underflow to subnormals and zero as IEEE 754 says.
#pragma once
#include <cstdint>
#include <cstring>

#include "common.h"

namespace l2c {

L2C_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
L2C_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

L2C_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  // NaN, quiet
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (Inf stays Inf)
  return (uint16_t)(u >> 16);
}
L2C_HD float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

L2C_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (a >= 0x38800000u) {                                   // normal half (>= 2^-14)
    uint32_t r = a - 0x38000000u;                           // rebias 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
  }
  if (a < 0x33000000u) return (uint16_t)sign;  // < 2^-25: rounds to zero
  // Subnormal half: value = m * 2^-24, m = round(a_real * 2^24).
  uint32_t e = a >> 23;                       // biased exponent, 102..112
  uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126u - e;                  // 14..24
  uint32_t m = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (m & 1u))) m++;
  return (uint16_t)(sign | m);
}
L2C_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return bits_f32(sign | 0x7f800000u | (m << 13));  // Inf / NaN
  if (e != 0) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return bits_f32(sign);
  // Subnormal: normalise.
  int sh = 0;
  while (!(m & 0x400u)) { m <<= 1; sh++; }
  return bits_f32(sign | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13));
}

// int32 -> bfloat16 rounded once from the exact value: (float)x may round already
// (|x| > 2^24) and make a tie that the exact value does not have; move such a tie one
// float ulp toward x so that the second rounding goes the way a single one would.
L2C_HD uint16_t i32_to_bf16(int32_t x) {
  float f = (float)x;
  uint32_t u = f32_bits(f);
  if ((u & 0xffffu) == 0x8000u) {
    int64_t fi = (int64_t)f, xi = (int64_t)x;
    if (fi != xi) {
      bool x_larger_magnitude = (xi > fi) == (x > 0);
      u = x_larger_magnitude ? u + 1u : u - 1u;
      f = bits_f32(u);
    }
  }
  return f32_to_bf16(f);
}

}  // namespace l2c
