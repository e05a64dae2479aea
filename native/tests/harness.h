// harness.h: the native test program's tiny framework. L2C_TEST registers a case;
// L2C_EXPECT records a failure and goes on; L2C_SKIP ends a case as skipped (used by
// the CUDA cases on machines without a GPU). main() is in test_main.cc; it ends with
// the line "N passed, N failed, N skipped".
#pragma once
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace l2c_test {

struct Case {
  const char *name;
  std::function<void()> fn;
};
std::vector<Case> &registry();
struct Registrar {
  Registrar(const char *name, std::function<void()> fn) { registry().push_back({name, fn}); }
};
struct Skip {
  std::string reason;
};
void record_failure(const char *file, int line, const std::string &msg);

}  // namespace l2c_test

#define L2C_CAT2(a, b) a##b
#define L2C_CAT(a, b) L2C_CAT2(a, b)
#define L2C_TEST(name)                                                              \
  static void L2C_CAT(l2c_test_fn_, name)();                                       \
  static ::l2c_test::Registrar L2C_CAT(l2c_test_reg_, name)(#name,                 \
                                                            L2C_CAT(l2c_test_fn_, name)); \
  static void L2C_CAT(l2c_test_fn_, name)()

#define L2C_EXPECT(cond, msg)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::ostringstream l2c_os_;                                                    \
      l2c_os_ << #cond << ": " << msg;                                               \
      ::l2c_test::record_failure(__FILE__, __LINE__, l2c_os_.str());                 \
    }                                                                                \
  } while (0)

#define L2C_SKIP(reason) throw ::l2c_test::Skip{reason}
