// common.h: internal helpers shared by every backend: the exception that carries an
// l2c_status across C++ code (caught once at the C ABI boundary), check macros, and
// the host/device function qualifier used by headers that CUDA code includes too.
#pragma once
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "llm2clip.h"

#if defined(__CUDACC__)
#define L2C_HD __host__ __device__ __forceinline__
#else
#define L2C_HD inline
#endif

namespace l2c {

// Thrown inside the core; translated to (status, last error) by the ABI wrappers.
struct Error : std::runtime_error {
  l2c_status status;
  Error(l2c_status s, const std::string &msg) : std::runtime_error(msg), status(s) {}
};

[[noreturn]] inline void fail(l2c_status s, const std::string &msg) { throw Error(s, msg); }

// "[2,3,4]"
std::string shape_str(const l2c_tensor &t);
const char *dtype_name(l2c_dtype d);
int64_t numel(const l2c_tensor &t);

}  // namespace l2c

#define L2C_CHECK(cond, status, msg)                                                  \
  do {                                                                                \
    if (!(cond)) ::l2c::fail((status), (msg));                                        \
  } while (0)
