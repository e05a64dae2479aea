// isa.cc: picks the CPU matmul level at run time. Every source is compiled without
// -march flags, so the AVX code lives behind function target attributes and is only
// reached through the table chosen here, after __builtin_cpu_supports (which also
// checks that the OS saves the wide registers) says the CPU has the features.
#include <atomic>
#include <cstring>
#include <string>

#include "backend.h"
#include "matmul_kernels.h"

namespace l2c {
namespace cpu {
namespace {

bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}
// F16C is part of the level because its float16 packing uses vcvtph2ps / vcvtps2ph;
// every AVX2 CPU shipped has it.
bool has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

const mm::KernelSet *best() {
  if (has_avx512()) return &mm::kernels_avx512();
  if (has_avx2()) return &mm::kernels_avx2();
  return &mm::kernels_generic();
}

// nullptr until first use; a plain atomic pointer is all the synchronisation needed
// (tables are immutable statics).
std::atomic<const mm::KernelSet *> g_active{nullptr};

}  // namespace

const mm::KernelSet &mm::active_kernels() {
  const KernelSet *k = g_active.load(std::memory_order_acquire);
  if (!k) {
    k = best();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

const char *isa_name() { return mm::active_kernels().name; }

void set_isa(const char *name) {
  L2C_CHECK(name != nullptr, L2C_INVALID_ARGUMENT, "set_isa: name is null");
  const mm::KernelSet *k = nullptr;
  if (std::strcmp(name, "avx512") == 0) {
    L2C_CHECK(has_avx512(), L2C_INVALID_ARGUMENT, "set_isa: this CPU lacks AVX-512");
    k = &mm::kernels_avx512();
  } else if (std::strcmp(name, "avx2") == 0) {
    L2C_CHECK(has_avx2(), L2C_INVALID_ARGUMENT, "set_isa: this CPU lacks AVX2/FMA/F16C");
    k = &mm::kernels_avx2();
  } else if (std::strcmp(name, "generic") == 0) {
    k = &mm::kernels_generic();
  } else {
    fail(L2C_INVALID_ARGUMENT,
         std::string("set_isa: unknown level '") + name + "' (avx512 | avx2 | generic)");
  }
  g_active.store(k, std::memory_order_release);
}

}  // namespace cpu
}  // namespace l2c
