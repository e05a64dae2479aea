// philox.h: the counter-based generator behind rand / randn / dropout masks.
// Philox4x32-10 (Salmon et al., SC'11): element i of a draw with seed s is a pure
// function of (s, i), so the CPU and CUDA produce the same values for the same seed.
// Uniform and normal values are made with correctly rounded float operations only
// (explicit add/mul/div/fma/sqrt, own log and cos polynomials, no libm), so they are
// bit-identical on both devices. Files including this must not be compiled with FMA
// contraction enabled on the host (the generic CPU flags never enable it).
#pragma once
#include <cstdint>
#include <cmath>

#include "common.h"
#include "half.h"

namespace l2c {
namespace philox {

struct u32x4 { uint32_t v[4]; };

L2C_HD void mulhilo(uint32_t a, uint32_t b, uint32_t &hi, uint32_t &lo) {
  uint64_t p = (uint64_t)a * (uint64_t)b;
  hi = (uint32_t)(p >> 32);
  lo = (uint32_t)p;
}

// Four 32-bit random words for counter `ctr` under `seed`.
L2C_HD u32x4 philox4x32_10(uint64_t ctr, uint64_t seed) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, c0, hi0, lo0);
    mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  u32x4 out = {{c0, c1, c2, c3}};
  return out;
}

// Word j (0..3) of element i's block: elements are drawn 4 per counter.
L2C_HD uint32_t word(uint64_t i, uint64_t seed) {
  return philox4x32_10(i >> 2, seed).v[i & 3];
}

// Correctly rounded single operations, never fused by the compiler.
#if defined(__CUDA_ARCH__)
L2C_HD float add_rn(float a, float b) { return __fadd_rn(a, b); }
L2C_HD float mul_rn(float a, float b) { return __fmul_rn(a, b); }
L2C_HD float div_rn(float a, float b) { return __fdiv_rn(a, b); }
L2C_HD float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
L2C_HD float sqrt_rn(float a) { return __fsqrt_rn(a); }
#else
L2C_HD float add_rn(float a, float b) { return a + b; }
L2C_HD float mul_rn(float a, float b) { return a * b; }
L2C_HD float div_rn(float a, float b) { return a / b; }
L2C_HD float fma_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
L2C_HD float sqrt_rn(float a) { return std::sqrt(a); }
#endif

// Uniform in [0, 1) with 24 random bits: exact in float.
L2C_HD float uniform01(uint32_t w) { return (float)(w >> 8) * 5.9604644775390625e-8f; }
// Uniform in (0, 1]: for logarithms.
L2C_HD float uniform01_open0(uint32_t w) {
  return (float)((w >> 8) + 1u) * 5.9604644775390625e-8f;
}

// ln(x) for x in (0, 1]: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), ln m by the atanh
// series in s = (m-1)/(m+1), |s| <= 0.1716 (terms past s^13 are below 1e-11).
L2C_HD float log_pos(float x) {
  uint32_t u = f32_bits(x);
  int e = (int)((u >> 23) & 0xffu) - 127;
  float m = bits_f32((u & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) { m = mul_rn(m, 0.5f); e += 1; }
  float s = div_rn(add_rn(m, -1.0f), add_rn(m, 1.0f));
  float s2 = mul_rn(s, s);
  float p = 1.0f / 13.0f;
  p = fma_rn(p, s2, 1.0f / 11.0f);
  p = fma_rn(p, s2, 1.0f / 9.0f);
  p = fma_rn(p, s2, 1.0f / 7.0f);
  p = fma_rn(p, s2, 1.0f / 5.0f);
  p = fma_rn(p, s2, 1.0f / 3.0f);
  p = fma_rn(p, s2, 1.0f);
  float ln_m = mul_rn(mul_rn(2.0f, s), p);
  return fma_rn((float)e, 0.693147180559945f, ln_m);
}

// cos(2*pi*t) for t in [0, 1).
L2C_HD float cos_2pi(float t) {
  float x = t > 0.5f ? add_rn(1.0f, -t) : t;  // cos is symmetric: x in [0, 0.5]
  float sign = 1.0f;
  if (x > 0.25f) { x = add_rn(0.5f, -x); sign = -1.0f; }  // cos(pi - y) = -cos(y)
  float y = mul_rn(x, 6.28318530717958648f);  // [0, pi/2]
  float y2 = mul_rn(y, y);
  float p = 1.0f / 479001600.0f;               // 1/12!
  p = fma_rn(p, y2, -1.0f / 3628800.0f);
  p = fma_rn(p, y2, 1.0f / 40320.0f);
  p = fma_rn(p, y2, -1.0f / 720.0f);
  p = fma_rn(p, y2, 1.0f / 24.0f);
  p = fma_rn(p, y2, -0.5f);
  p = fma_rn(p, y2, 1.0f);
  return mul_rn(sign, p);
}

// Element i of a uniform draw in [lo, hi).
L2C_HD float uniform(uint64_t i, uint64_t seed, float lo, float hi) {
  float r = fma_rn(add_rn(hi, -lo), uniform01(word(i, seed)), lo);
  return r < hi ? r : lo;  // rounding may reach hi for huge ranges: keep [lo, hi)
}

// Element i of a normal draw: Box-Muller on the pair of words (2j, 2j+1) of the block
// that element i belongs to; even i takes the cosine branch, odd i the shifted one.
L2C_HD float normal(uint64_t i, uint64_t seed, float mean, float std) {
  u32x4 w = philox4x32_10(i >> 1, seed ^ 0x6a09e667f3bcc909ull);
  float u1 = uniform01_open0(w.v[0]);
  float u2 = uniform01(w.v[1]);
  float r = sqrt_rn(mul_rn(-2.0f, log_pos(u1)));
  float t = u2;
  if (i & 1) { t = add_rn(t, 0.25f); if (t >= 1.0f) t = add_rn(t, -1.0f); }  // sin branch
  return fma_rn(mul_rn(r, cos_2pi(t)), std, mean);
}

}  // namespace philox
}  // namespace l2c
