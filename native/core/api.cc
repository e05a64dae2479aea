// api.cc: the C ABI (llm2clip.h). Each entry validates its arguments, dispatches on the
// tensors' device to the cpu:: or cuda:: backend, and turns any l2c::Error (or other
// C++ exception) into a status code plus a thread-local last-error message: nothing
// thrown ever crosses the ABI.
#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "backend.h"
#include "common.h"
#include "threadpool.h"
#include "api_util.h"

namespace l2c {
namespace api {

thread_local std::string g_last_error;

void set_last_error(const std::string &msg) { g_last_error = msg; }

bool valid_dtype(l2c_dtype d) { return d >= L2C_FLOAT32 && d <= L2C_INT32; }

void check_device(const l2c_device &d, const char *what) {
  if (d.type == L2C_CPU) return;
  if (d.type != L2C_CUDA) fail(L2C_INVALID_ARGUMENT, std::string(what) + ": unknown device type");
  if (!l2c::cuda::compiled())
    fail(L2C_DEVICE_UNAVAILABLE, std::string(what) + ": llm2clip was built without CUDA");
  int n = l2c::cuda::device_count();
  if (d.index < 0 || d.index >= n)
    fail(L2C_DEVICE_UNAVAILABLE, std::string(what) + ": cuda:" + std::to_string(d.index) +
                                     " is not available (" + std::to_string(n) +
                                     " CUDA device(s) found)");
}

// What memory safety depends on: a descriptor that is well formed, has data, and lives
// on a device that exists. check_form alone lets an op report a device mismatch first.
void check_form(const l2c_tensor *t, const char *what) {
  if (!t) fail(L2C_INVALID_ARGUMENT, std::string(what) + ": null tensor");
  if (!valid_dtype(t->dtype)) fail(L2C_INVALID_ARGUMENT, std::string(what) + ": unknown dtype");
  if (t->ndim < 0 || t->ndim > L2C_MAX_DIMS)
    fail(L2C_INVALID_ARGUMENT, std::string(what) + ": ndim " + std::to_string(t->ndim) +
                                   " outside [0, " + std::to_string(L2C_MAX_DIMS) + "]");
  for (int i = 0; i < t->ndim; i++)
    if (t->shape[i] < 0)
      fail(L2C_INVALID_ARGUMENT, std::string(what) + ": negative dimension in shape " +
                                     l2c::shape_str(*t));
  if (!t->data && l2c::numel(*t) > 0)
    fail(L2C_INVALID_ARGUMENT, std::string(what) + ": null data pointer");
  if (t->device.type != L2C_CPU && t->device.type != L2C_CUDA)
    fail(L2C_INVALID_ARGUMENT, std::string(what) + ": unknown device type");
}

void check_tensor(const l2c_tensor *t, const char *what) {
  check_form(t, what);
  check_device(t->device, what);
}

std::string desc(const char *what, const l2c_tensor &t) {
  return std::string(what) + " " + l2c::dtype_name(t.dtype) + l2c::shape_str(t);
}

bool same_device(const l2c_device &a, const l2c_device &b) {
  return a.type == b.type && (a.type == L2C_CPU || a.index == b.index);
}

std::string device_str(const l2c_device &d) {
  return d.type == L2C_CPU ? "cpu" : "cuda:" + std::to_string(d.index);
}

}  // namespace api
}  // namespace l2c

namespace {

using l2c::fail;
using namespace l2c::api;

void build_matmul(const l2c_matmul_args *args, l2c::MatmulParams &p) {
  if (!args) fail(L2C_INVALID_ARGUMENT, "matmul: null arguments");
  check_form(args->a, "matmul: a");
  check_form(args->b, "matmul: b");
  check_form(args->out, "matmul: out");
  const l2c_tensor &a = *args->a, &b = *args->b, &o = *args->out;
  if (!same_device(a.device, b.device) || !same_device(a.device, o.device))
    fail(L2C_DEVICE_MISMATCH, "matmul: a on " + device_str(a.device) + ", b on " +
                                  device_str(b.device) + ", out on " + device_str(o.device));
  check_device(a.device, "matmul");
  if (a.dtype != b.dtype)
    fail(L2C_DTYPE_MISMATCH, "matmul: " + desc("a", a) + " and " + desc("b", b) +
                                 " must have the same dtype");
  if (a.dtype == L2C_INT32)
    fail(L2C_DTYPE_MISMATCH, "matmul: int32 inputs are not supported (float32, bfloat16, float16)");
  if (o.dtype != a.dtype && o.dtype != L2C_FLOAT32)
    fail(L2C_DTYPE_MISMATCH, "matmul: " + desc("out", o) + " must be " +
                                 l2c::dtype_name(a.dtype) + " or float32");
  int nd = a.ndim;
  if ((nd != 2 && nd != 3) || b.ndim != nd || o.ndim != nd)
    fail(L2C_SHAPE_MISMATCH, "matmul: " + desc("a", a) + ", " + desc("b", b) + ", " +
                                 desc("out", o) + ": all 2-D or all 3-D");
  int64_t ba = nd == 3 ? a.shape[0] : 1, bb = nd == 3 ? b.shape[0] : 1;
  int64_t bo = nd == 3 ? o.shape[0] : 1;
  int64_t batch = ba > bb ? ba : bb;
  if ((ba != batch && ba != 1) || (bb != batch && bb != 1) || bo != batch)
    fail(L2C_SHAPE_MISMATCH, "matmul: batch sizes of " + desc("a", a) + ", " + desc("b", b) +
                                 ", " + desc("out", o) + " do not match");
  int r = nd - 2;
  int64_t M = args->trans_a ? a.shape[r + 1] : a.shape[r];
  int64_t Ka = args->trans_a ? a.shape[r] : a.shape[r + 1];
  int64_t Kb = args->trans_b ? b.shape[r + 1] : b.shape[r];
  int64_t N = args->trans_b ? b.shape[r] : b.shape[r + 1];
  if (Ka != Kb)
    fail(L2C_SHAPE_MISMATCH, "matmul: inner dimensions differ: " + desc("a", a) +
                                 (args->trans_a ? " (transposed)" : "") + " has K=" +
                                 std::to_string(Ka) + ", " + desc("b", b) +
                                 (args->trans_b ? " (transposed)" : "") + " has K=" +
                                 std::to_string(Kb));
  if (o.shape[r] != M || o.shape[r + 1] != N)
    fail(L2C_SHAPE_MISMATCH, "matmul: " + desc("out", o) + " must be [" +
                                 (nd == 3 ? std::to_string(batch) + "," : "") +
                                 std::to_string(M) + "," + std::to_string(N) + "]");
  p.a = a.data;
  p.b = b.data;
  p.c = o.data;
  p.in_dtype = a.dtype;
  p.out_dtype = o.dtype;
  p.batch = batch;
  p.M = M;
  p.N = N;
  p.K = Ka;
  p.trans_a = args->trans_a != 0;
  p.trans_b = args->trans_b != 0;
  // BLAS convention: leading dimensions are at least 1, also for empty matrices.
  p.lda = std::max<int64_t>(1, a.shape[r + 1]);
  p.ldb = std::max<int64_t>(1, b.shape[r + 1]);
  p.ldc = std::max<int64_t>(1, N);
  p.stride_a = ba == 1 ? 0 : a.shape[r] * a.shape[r + 1];
  p.stride_b = bb == 1 ? 0 : b.shape[r] * b.shape[r + 1];
  p.stride_c = M * N;
}

}  // namespace

extern "C" {

const char *l2c_last_error(void) { return g_last_error.c_str(); }

const char *l2c_status_name(l2c_status s) {
  switch (s) {
    case L2C_OK: return "OK";
    case L2C_SHAPE_MISMATCH: return "SHAPE_MISMATCH";
    case L2C_DTYPE_MISMATCH: return "DTYPE_MISMATCH";
    case L2C_DEVICE_UNAVAILABLE: return "DEVICE_UNAVAILABLE";
    case L2C_DEVICE_MISMATCH: return "DEVICE_MISMATCH";
    case L2C_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case L2C_DISPOSED: return "DISPOSED";
    case L2C_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case L2C_INTERNAL: return "INTERNAL";
  }
  return "UNKNOWN";
}

int32_t l2c_abi_version(void) { return L2C_ABI_VERSION; }

size_t l2c_dtype_size(l2c_dtype d) {
  switch (d) {
    case L2C_FLOAT32: case L2C_INT32: return 4;
    case L2C_BFLOAT16: case L2C_FLOAT16: return 2;
  }
  return 0;
}

int32_t l2c_num_threads(void) { return l2c::num_threads(); }

l2c_status l2c_set_num_threads(int32_t n) {
  return guarded([&] {
    if (n < 1 || n > 1024)
      fail(L2C_INVALID_ARGUMENT, "set_num_threads: n = " + std::to_string(n) + " outside [1, 1024]");
    l2c::set_num_threads(n);
  });
}

const char *l2c_cpu_isa(void) { return l2c::cpu::isa_name(); }

l2c_status l2c_set_cpu_isa(const char *isa) {
  return guarded([&] {
    if (!isa) fail(L2C_INVALID_ARGUMENT, "set_cpu_isa: null name");
    l2c::cpu::set_isa(isa);
  });
}

l2c_status l2c_alloc(l2c_device device, size_t bytes, void **out) {
  return guarded([&] {
    if (!out) fail(L2C_INVALID_ARGUMENT, "alloc: null output pointer");
    *out = nullptr;
    check_device(device, "alloc");
    *out = device.type == L2C_CPU ? l2c::cpu::alloc(bytes) : l2c::cuda::alloc(device.index, bytes);
  });
}

l2c_status l2c_free(l2c_device device, void *ptr) {
  return guarded([&] {
    if (!ptr) return;
    check_device(device, "free");
    if (device.type == L2C_CPU) l2c::cpu::free(ptr);
    else l2c::cuda::free(device.index, ptr);
  });
}

l2c_status l2c_memory_stats_get(l2c_device device, l2c_memory_stats *out) {
  return guarded([&] {
    if (!out) fail(L2C_INVALID_ARGUMENT, "memory_stats: null output");
    check_device(device, "memory_stats");
    *out = device.type == L2C_CPU ? l2c::cpu::memory_stats() : l2c::cuda::memory_stats(device.index);
  });
}

l2c_status l2c_empty_cache(l2c_device device) {
  return guarded([&] {
    check_device(device, "empty_cache");
    if (device.type == L2C_CUDA) l2c::cuda::empty_cache(device.index);
    else l2c::cpu::empty_cache();
  });
}

int32_t l2c_cuda_compiled(void) { return l2c::cuda::compiled() ? 1 : 0; }
int32_t l2c_cuda_device_count(void) { return l2c::cuda::device_count(); }

l2c_status l2c_cuda_device_name(int32_t index, char *buf, size_t len) {
  return guarded([&] {
    if (!buf || len == 0) fail(L2C_INVALID_ARGUMENT, "cuda_device_name: empty buffer");
    buf[0] = 0;
    check_device(l2c_device{L2C_CUDA, index}, "cuda_device_name");
    l2c::cuda::device_name(index, buf, len);
  });
}

l2c_status l2c_synchronize(l2c_device device) {
  return guarded([&] {
    check_device(device, "synchronize");
    if (device.type == L2C_CUDA) l2c::cuda::synchronize(device.index);
  });
}

l2c_status l2c_copy(const l2c_tensor *dst, const l2c_tensor *src) {
  return guarded([&] {
    check_tensor(dst, "copy: dst");
    check_tensor(src, "copy: src");
    if (dst->dtype != src->dtype)
      fail(L2C_DTYPE_MISMATCH, "copy: " + desc("dst", *dst) + " and " + desc("src", *src) +
                                   " differ in dtype");
    int64_t n = l2c::numel(*dst);
    if (n != l2c::numel(*src))
      fail(L2C_SHAPE_MISMATCH, "copy: " + desc("dst", *dst) + " and " + desc("src", *src) +
                                   " differ in size");
    size_t bytes = (size_t)n * l2c_dtype_size(dst->dtype);
    if (bytes == 0) return;
    bool dc = dst->device.type == L2C_CUDA, sc = src->device.type == L2C_CUDA;
    if (!dc && !sc) std::memmove(dst->data, src->data, bytes);
    else if (dc && !sc) l2c::cuda::copy_h2d(dst->device.index, dst->data, src->data, bytes);
    else if (!dc && sc) l2c::cuda::copy_d2h(src->device.index, dst->data, src->data, bytes);
    else l2c::cuda::copy_d2d(dst->device.index, dst->data, src->device.index, src->data, bytes);
  });
}

l2c_status l2c_cast(const l2c_tensor *dst, const l2c_tensor *src) {
  return guarded([&] {
    check_form(dst, "cast: dst");
    check_form(src, "cast: src");
    if (!same_device(dst->device, src->device))
      fail(L2C_DEVICE_MISMATCH, "cast: dst on " + device_str(dst->device) + ", src on " +
                                    device_str(src->device));
    check_device(dst->device, "cast");
    if (l2c::numel(*dst) != l2c::numel(*src))
      fail(L2C_SHAPE_MISMATCH, "cast: " + desc("dst", *dst) + " and " + desc("src", *src) +
                                   " differ in size");
    if (dst->device.type == L2C_CPU) l2c::cpu::cast(*dst, *src);
    else l2c::cuda::cast(*dst, *src);
  });
}

l2c_status l2c_fill(const l2c_tensor *dst, double value) {
  return guarded([&] {
    check_tensor(dst, "fill: dst");
    if (dst->device.type == L2C_CPU) l2c::cpu::fill(*dst, value);
    else l2c::cuda::fill(*dst, value);
  });
}

l2c_status l2c_random(const l2c_tensor *dst, l2c_random_kind kind, uint64_t seed, double a,
                      double b) {
  return guarded([&] {
    check_tensor(dst, "random: dst");
    if (kind != L2C_RANDOM_UNIFORM && kind != L2C_RANDOM_NORMAL)
      fail(L2C_INVALID_ARGUMENT, "random: unknown kind");
    if (dst->dtype == L2C_INT32)
      fail(L2C_DTYPE_MISMATCH, "random: " + desc("dst", *dst) + " must be a float dtype");
    if (!(a == a) || !(b == b))
      fail(L2C_INVALID_ARGUMENT, "random: parameters must not be NaN");
    if (kind == L2C_RANDOM_UNIFORM && !(b > a))
      fail(L2C_INVALID_ARGUMENT, "random: uniform needs low < high (got [" + std::to_string(a) +
                                     ", " + std::to_string(b) + "))");
    if (kind == L2C_RANDOM_NORMAL && !(b >= 0))
      fail(L2C_INVALID_ARGUMENT, "random: normal needs std >= 0 (got " + std::to_string(b) + ")");
    if (dst->device.type == L2C_CPU) l2c::cpu::random(*dst, kind, seed, a, b);
    else l2c::cuda::random(*dst, kind, seed, a, b);
  });
}

l2c_status l2c_matmul(const l2c_matmul_args *args) {
  return guarded([&] {
    l2c::MatmulParams p;
    build_matmul(args, p);
    if (p.M == 0 || p.N == 0 || p.batch == 0) return;
    if (args->a->device.type == L2C_CPU) l2c::cpu::matmul(p);
    else l2c::cuda::matmul(args->a->device.index, p);
  });
}

}  // extern "C"
