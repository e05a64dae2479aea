// test_main.cc: runs every registered native test case (or those whose name contains
// argv[1]) and prints "N passed, N failed, N skipped". Exit status 1 on any failure.
#include <cstring>
#include <exception>

#include "harness.h"

namespace l2c_test {
std::vector<Case> &registry() {
  static std::vector<Case> r;
  return r;
}
static int g_failures_in_case = 0;
void record_failure(const char *file, int line, const std::string &msg) {
  if (g_failures_in_case < 5) std::printf("    %s:%d: %s\n", file, line, msg.c_str());
  g_failures_in_case++;
}
}  // namespace l2c_test

int main(int argc, char **argv) {
  using namespace l2c_test;
  const char *filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0, skipped = 0;
  for (auto &c : registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    g_failures_in_case = 0;
    std::string status;
    try {
      c.fn();
      status = g_failures_in_case ? "FAIL" : "ok";
    } catch (const Skip &s) {
      status = "skipped (" + s.reason + ")";
      skipped++;
      std::printf("  %-50s %s\n", c.name, status.c_str());
      continue;
    } catch (const std::exception &e) {
      std::printf("    uncaught exception: %s\n", e.what());
      g_failures_in_case++;
      status = "FAIL";
    }
    if (g_failures_in_case) failed++; else passed++;
    std::printf("  %-50s %s\n", c.name, status.c_str());
  }
  std::printf("native: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
