// Fake cuda_fp16.h for the CPU emulation (see emu.h): __half as its bits.
#pragma once
#include <cstdint>
#include "half.h"
struct __half { uint16_t b; };
inline __half __ushort_as_half(uint16_t v) { return __half{v}; }
inline float __half2float(__half h) { return l2c::f16_to_f32(h.b); }
