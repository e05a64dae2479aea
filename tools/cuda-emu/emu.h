// emu.h: a CPU emulation of the CUDA execution model, enough to run native/cuda/infonce.cu
// (rewritten by transform.py; see build.sh) and gemm.cuh / matmul.cu / lora.cu (rewritten
// by transform_gemm.py; see build_lora.sh) on the host: one block at a time, its threads
// as cooperative user-level contexts switched at barriers and warp collectives;
// __syncthreads, __shfl_xor_sync, cp.async (deferred until the matching wait_group: the
// most adversarial legal timing), ldmatrix (.trans) and mma.sync m16n8k16 per the PTX ISA
// fragment layouts. Checks: deadlocks, cp.async in flight at exit, misaligned or
// out-of-range shared addresses, dynamic shared memory above the opt-in (and above the
// A100 limit), shared memory poisoned (NaN) at every block start.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __double2float_rn(double d) { return (float)d; }
inline float __int_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

namespace emu {
extern dim3 cur_thread, cur_block, grid_dim, block_dim;
int cur_tid();
unsigned char *xslot(int warp, int lane);  // 64 bytes per lane
void warp_sync();
bool claim_warp_leader();  // true for the first lane of the warp after a warp_sync
void block_sync();
unsigned char *dyn_smem();
void set_max_dyn_smem(const void *kernel, int bytes);
int sm_count();
void cp_async16(void *dst, const void *src, int bytes);
void cp_async_commit();
void cp_async_wait(int n);
void ldsm(uint32_t (&r)[4], const void *p, bool trans);
void check_smem(const void *p, size_t bytes, size_t align, const char *what);

struct Cfg {
  dim3 grid, block;
  size_t smem;
  void *stream;
  Cfg(dim3 g, dim3 b, size_t s = 0, void *st = nullptr) : grid(g), block(b), smem(s), stream(st) {}
};
void run_grid(const Cfg &cfg, const void *kernel, const std::function<void()> &body);
template <class... P, class... A>
void launch(void (*k)(P...), Cfg cfg, A... args) {
  run_grid(cfg, reinterpret_cast<const void *>(k), [=] { k(args...); });
}

template <class T>
T shfl_xor(T v, int o) {
  const int t = cur_tid(), w = t / 32, l = t % 32;
  std::memcpy(xslot(w, l), &v, sizeof(T));
  warp_sync();
  T r;
  std::memcpy(&r, xslot(w, l ^ o), sizeof(T));
  warp_sync();
  return r;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: fragments per the PTX ISA
// (groupID g = lane / 4, threadID_in_group q = lane % 4):
//   a0: A[g][2q..2q+1]  a1: A[g+8][2q..]  a2: A[g][2q+8..]  a3: A[g+8][2q+8..]
//   b0: B[2q..2q+1][g]  b1: B[2q+8..2q+9][g]
//   c0, c1: C[g][2q..2q+1]  c2, c3: C[g+8][2q..2q+1]
template <class Tag>
void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int t = cur_tid(), w = t / 32, l = t % 32;
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  std::memcpy(xslot(w, l), mine, sizeof mine);
  std::memcpy(xslot(w, l) + 24, c, sizeof c);
  warp_sync();
  if (claim_warp_leader()) {  // the first lane back computes the warp's D for every lane
    float A[16][16], B[16][8];
    auto lo = [](uint32_t v) { return Tag::to_f32((uint16_t)(v & 0xffffu)); };
    auto hi = [](uint32_t v) { return Tag::to_f32((uint16_t)(v >> 16)); };
    for (int L = 0; L < 32; L++) {
      uint32_t f[6];
      std::memcpy(f, xslot(w, L), sizeof f);
      const int g = L / 4, q = L % 4;
      A[g][2 * q] = lo(f[0]);
      A[g][2 * q + 1] = hi(f[0]);
      A[g + 8][2 * q] = lo(f[1]);
      A[g + 8][2 * q + 1] = hi(f[1]);
      A[g][2 * q + 8] = lo(f[2]);
      A[g][2 * q + 9] = hi(f[2]);
      A[g + 8][2 * q + 8] = lo(f[3]);
      A[g + 8][2 * q + 9] = hi(f[3]);
      B[2 * q][g] = lo(f[4]);
      B[2 * q + 1][g] = hi(f[4]);
      B[2 * q + 8][g] = lo(f[5]);
      B[2 * q + 9][g] = hi(f[5]);
    }
    for (int L = 0; L < 32; L++) {
      const int g = L / 4, q = L % 4;
      float d[4];
      std::memcpy(d, xslot(w, L) + 24, sizeof d);
      for (int e = 0; e < 4; e++) {
        const int row = g + 8 * (e / 2), col = 2 * q + (e % 2);
        float s = d[e];
        for (int k = 0; k < 16; k++) s = std::fma(A[row][k], B[k][col], s);
        d[e] = s;
      }
      std::memcpy(xslot(w, L) + 40, d, sizeof d);
    }
  }
  std::memcpy(c, xslot(w, l) + 40, sizeof c);
  warp_sync();
}
}  // namespace emu

#define threadIdx (::emu::cur_thread)
#define blockIdx (::emu::cur_block)
#define gridDim (::emu::grid_dim)
#define blockDim (::emu::block_dim)
inline void __syncthreads() { emu::block_sync(); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int o) {
  return emu::shfl_xor(v, o);
}
