// matmul_kernels.h: the interface between the CPU matmul driver (matmul.cc) and the
// per-ISA files (matmul_avx512.cc, matmul_avx2.cc, matmul_generic.cc). Each ISA file
// provides one KernelSet: its register tile (MR x NR), cache blocking, a tile kernel
// on packed float32 panels, the packing routine and the float32 -> 16-bit output store.
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {
namespace cpu {
namespace mm {

// Packed layouts (all float32, panels zero-padded to full width):
//   A block (mc x kc): ceil(mc/MR) panels, panel p at a + p*MR*kc, element (r, k) at
//                      [k*MR + r]  (MR rows of op(A) interleaved per k)
//   B block (kc x nc): ceil(nc/NR) panels, panel q at b + q*NR*kc, element (k, c) at
//                      [k*NR + c]
struct KernelSet {
  const char *name;
  int mr, nr;           // register tile: MR rows of C by NR columns
  int64_t mc, kc, nc;   // cache blocks: A block mc x kc (L3), B block kc x nc (L2),
                        // A panel kc x MR (L1); mc is a multiple of mr, nc of nr

  // c (m x n, row stride ldc) = (accumulate ? c : 0) + a_panel (kc x MR) . b_panel
  // (kc x NR), for 1 <= m <= MR, 1 <= n <= NR (kc >= 1). Only the m x n part of c is
  // read or written.
  void (*tile)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
               bool accumulate, int m, int n);

  // Packs a block of nx rows of a strided source: row x, depth k (x < nx, k < kc) is
  // src[x*sx + k*sk] (elements of dtype dt: float32 / bfloat16 / float16; exactly one
  // of sx, sk is 1 unless nx or kc is 1). Writes ceil(nx/w) panels of w rows to dst,
  // panel p at dst + p*w*kc with (x, k) at [k*w + x - p*w]; rows >= nx are zero.
  // Used for A (w = MR, rows = M) and for B (w = NR, rows = N).
  void (*pack)(const void *src, l2c_dtype dt, int64_t sx, int64_t sk, int64_t nx,
               int64_t kc, int w, float *dst);

  // dst[i] = round_to_nearest_even(src[i]) as bfloat16 or float16 (dt), i < n,
  // bit-identical to half.h's f32_to_bf16 / f32_to_f16.
  void (*store_half)(const float *src, void *dst, l2c_dtype dt, int64_t n);

  // Optional (null where absent): bfloat16 inputs multiplied as pairs of consecutive k
  // (AVX512_BF16). pack_bf16 has pack's contract but writes each panel as ceil(kc/2)
  // 32-bit units per row, (x, k) at uint16 [(k/2)*2w + 2x + (k&1)], odd tails zero;
  // tile_bf16 is tile with its first argument counting those pairs.
  void (*tile_bf16)(int64_t kpairs, const float *a, const float *b, float *c, int64_t ldc,
                    bool accumulate, int m, int n);
  void (*pack_bf16)(const void *src, l2c_dtype dt, int64_t sx, int64_t sk, int64_t nx,
                    int64_t kc, int w, float *dst);
};

// Each returns its level's table. The AVX ones must only be called (through the
// table) on CPUs that have the features; isa.cc decides.
const KernelSet &kernels_generic();
const KernelSet &kernels_avx2();
const KernelSet &kernels_avx512();

// The table for the level in use (isa.cc).
const KernelSet &active_kernels();

// Portable scalar packing / conversion, shared by every level for the layouts it
// does not specialise (matmul_generic.cc).
void pack_scalar(const void *src, l2c_dtype dt, int64_t sx, int64_t sk, int64_t nx,
                 int64_t kc, int w, float *dst);
void store_half_scalar(const float *src, void *dst, l2c_dtype dt, int64_t n);

}  // namespace mm
}  // namespace cpu
}  // namespace l2c
