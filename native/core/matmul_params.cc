// matmul_params.cc: the checks of MatmulParams shared by the CPU and CUDA matmuls
// (backend.h): everything that would otherwise read or write out of bounds.
#include <string>

#include "backend.h"

namespace l2c {
namespace {

int64_t checked_mul(int64_t a, int64_t b, const char *who) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(L2C_INVALID_ARGUMENT, std::string(who) + ": sizes overflow");
  return r;
}
int64_t checked_add(int64_t a, int64_t b, const char *who) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(L2C_INVALID_ARGUMENT, std::string(who) + ": sizes overflow");
  return r;
}
// Elements spanned by `rows` rows of `cols` columns with row stride ld (0 if empty).
int64_t extent(int64_t rows, int64_t cols, int64_t ld, const char *who) {
  if (rows == 0 || cols == 0) return 0;
  return checked_add(checked_mul(rows - 1, ld, who), cols, who);
}

}  // namespace

void check_matmul_params(const MatmulParams &p, const char *who) {
  const std::string w(who);
  auto bad = [&](const std::string &m) { fail(L2C_INVALID_ARGUMENT, w + ": " + m); };
  if (p.batch < 0 || p.M < 0 || p.N < 0 || p.K < 0) bad("negative size");
  if (p.in_dtype != L2C_FLOAT32 && p.in_dtype != L2C_BFLOAT16 && p.in_dtype != L2C_FLOAT16)
    fail(L2C_DTYPE_MISMATCH, w + ": input dtype must be float32, bfloat16 or float16");
  if (p.out_dtype != p.in_dtype && p.out_dtype != L2C_FLOAT32)
    fail(L2C_DTYPE_MISMATCH, w + ": output dtype must be the input dtype or float32");
  if (p.stride_a < 0 || p.stride_b < 0 || p.stride_c < 0) bad("negative batch stride");
  // Rows x columns of A, B, C as stored.
  int64_t ar = p.trans_a ? p.K : p.M, ac = p.trans_a ? p.M : p.K;
  int64_t br = p.trans_b ? p.N : p.K, bc = p.trans_b ? p.K : p.N;
  if (p.lda < ac) bad("lda " + std::to_string(p.lda) + " < " + std::to_string(ac));
  if (p.ldb < bc) bad("ldb " + std::to_string(p.ldb) + " < " + std::to_string(bc));
  if (p.ldc < p.N) bad("ldc " + std::to_string(p.ldc) + " < " + std::to_string(p.N));
  // Batch entries of C must not overlap: threads and blocks write them concurrently.
  int64_t c_span = extent(p.M, p.N, p.ldc, who);
  if (p.batch > 1 && c_span > 0 && p.stride_c < c_span)
    bad("stride_c " + std::to_string(p.stride_c) + " overlaps the previous output matrix");
  // Every byte offset the kernels form must be representable.
  if (p.batch > 0) {
    checked_mul(checked_add(checked_mul(p.batch - 1, p.stride_a, who), extent(ar, ac, p.lda, who), who), 4, who);
    checked_mul(checked_add(checked_mul(p.batch - 1, p.stride_b, who), extent(br, bc, p.ldb, who), who), 4, who);
    checked_mul(checked_add(checked_mul(p.batch - 1, p.stride_c, who), c_span, who), 4, who);
  }
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;  // nothing is read or written
  if (!p.c) bad("output pointer is null");
  if (p.K > 0 && (!p.a || !p.b)) bad("input pointer is null");
}

}  // namespace l2c
