// api_util.h: what every C ABI file (api.cc, api_<family>.cc) shares: the guard that turns
// exceptions into status codes plus the thread-local last error, and the argument checks
// with messages that name the argument, its dtype and shape.
#pragma once
#include <exception>
#include <new>
#include <string>

#include "common.h"

namespace l2c {
namespace api {

void set_last_error(const std::string &msg);

// Runs fn; returns L2C_OK, or the status of what it threw (message kept for
// l2c_last_error()). Nothing thrown crosses the C ABI.
template <class F>
l2c_status guarded(F &&fn) {
  try {
    fn();
    set_last_error(std::string());
    return L2C_OK;
  } catch (const l2c::Error &e) {
    set_last_error(e.what());
    return e.status;
  } catch (const std::bad_alloc &) {
    set_last_error("out of host memory");
    return L2C_OUT_OF_MEMORY;
  } catch (const std::exception &e) {
    set_last_error(std::string("internal error: ") + e.what());
    return L2C_INTERNAL;
  } catch (...) {
    set_last_error("internal error: unknown exception");
    return L2C_INTERNAL;
  }
}

bool valid_dtype(l2c_dtype d);
// DEVICE_UNAVAILABLE unless d names the CPU or an existing CUDA device.
void check_device(const l2c_device &d, const char *what);
// A well-formed descriptor with data (null only when empty) on a known device type.
void check_form(const l2c_tensor *t, const char *what);
// check_form + check_device.
void check_tensor(const l2c_tensor *t, const char *what);
// "what float32[2,3]"
std::string desc(const char *what, const l2c_tensor &t);
bool same_device(const l2c_device &a, const l2c_device &b);
std::string device_str(const l2c_device &d);  // "cpu" | "cuda:0"

// The kernels of issue 3 run on the CPU; their CUDA twins come with the CUDA kernels.
// Until then a CUDA tensor gets DEVICE_UNAVAILABLE naming the op.
inline void require_cpu(const l2c_device &d, const char *op) {
  if (d.type != L2C_CPU)
    fail(L2C_DEVICE_UNAVAILABLE, std::string(op) + ": not available on " + device_str(d) +
                                     " in this version (CPU kernels only); move the tensors "
                                     "to the CPU with to('cpu')");
}
// A floating dtype: float32 / bfloat16 / float16 (DTYPE_MISMATCH otherwise).
inline void check_float(const l2c_tensor &t, const char *what) {
  if (t.dtype != L2C_FLOAT32 && t.dtype != L2C_BFLOAT16 && t.dtype != L2C_FLOAT16)
    fail(L2C_DTYPE_MISMATCH, desc(what, t) + " must be float32, bfloat16 or float16");
}

}  // namespace api
}  // namespace l2c
