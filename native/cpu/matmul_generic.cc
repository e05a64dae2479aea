// matmul_generic.cc: the portable matmul level (plain C++, no ISA attributes; the
// compiler may auto-vectorise at the baseline SSE2), plus the scalar packing and
// 16-bit output conversion that the AVX levels fall back to. See matmul_kernels.h.
#include <algorithm>
#include <cstring>

#include "half.h"
#include "matmul_kernels.h"

namespace l2c {
namespace cpu {
namespace mm {
namespace {

// 4 x 8: 8 SSE accumulators + 2 B vectors + 1 broadcast fit the 16 xmm registers.
constexpr int kMR = 4, kNR = 8;

inline float load_elem(const void *src, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_BFLOAT16: return bf16_to_f32(static_cast<const uint16_t *>(src)[i]);
    case L2C_FLOAT16: return f16_to_f32(static_cast<const uint16_t *>(src)[i]);
    default: return static_cast<const float *>(src)[i];
  }
}

void tile_generic(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                  bool accumulate, int m, int n) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; k++) {
    const float *ak = a + k * kMR, *bk = b + k * kNR;
    for (int r = 0; r < kMR; r++)
      for (int j = 0; j < kNR; j++) acc[r][j] += ak[r] * bk[j];
  }
  for (int r = 0; r < m; r++)
    for (int j = 0; j < n; j++)
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

}  // namespace

void pack_scalar(const void *src, l2c_dtype dt, int64_t sx, int64_t sk, int64_t nx,
                 int64_t kc, int w, float *dst) {
  for (int64_t x0 = 0; x0 < nx; x0 += w, dst += w * kc) {
    int64_t rows = std::min<int64_t>(w, nx - x0);
    if (rows < w) std::memset(dst, 0, sizeof(float) * w * kc);
    if (sk == 1) {  // k contiguous: read along k, write with stride w
      for (int64_t x = 0; x < rows; x++) {
        int64_t base = (x0 + x) * sx;
        for (int64_t k = 0; k < kc; k++) dst[k * w + x] = load_elem(src, dt, base + k);
      }
    } else {
      for (int64_t k = 0; k < kc; k++)
        for (int64_t x = 0; x < rows; x++)
          dst[k * w + x] = load_elem(src, dt, (x0 + x) * sx + k * sk);
    }
  }
}

void store_half_scalar(const float *src, void *dst, l2c_dtype dt, int64_t n) {
  uint16_t *d = static_cast<uint16_t *>(dst);
  if (dt == L2C_BFLOAT16)
    for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(src[i]);
  else
    for (int64_t i = 0; i < n; i++) d[i] = f32_to_f16(src[i]);
}

const KernelSet &kernels_generic() {
  // Blocks sized like the AVX2 level's; the generic level is a correctness fallback,
  // not tuned.
  static const KernelSet ks = {"generic", kMR, kNR, 1020, 256, 192,
                               tile_generic, pack_scalar, store_half_scalar, nullptr,
                               nullptr};
  return ks;
}

}  // namespace mm
}  // namespace cpu
}  // namespace l2c
