// common.cc: small helpers declared in common.h.
#include "common.h"

#include <sstream>

namespace l2c {

std::string shape_str(const l2c_tensor &t) {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < t.ndim; i++) os << (i ? "," : "") << t.shape[i];
  os << ']';
  return os.str();
}

const char *dtype_name(l2c_dtype d) {
  switch (d) {
    case L2C_FLOAT32: return "float32";
    case L2C_BFLOAT16: return "bfloat16";
    case L2C_FLOAT16: return "float16";
    case L2C_INT32: return "int32";
  }
  return "unknown";
}

int64_t numel(const l2c_tensor &t) {
  int64_t n = 1;
  for (int i = 0; i < t.ndim; i++) n *= t.shape[i];
  return n;
}

}  // namespace l2c
