#pragma once
// How a test binary tells CTest that it skipped: GoogleTest exits 0 when a
// test calls GTEST_SKIP, which CTest would report as a pass. Our mains exit
// with kSkipExitCode instead, registered as SKIP_RETURN_CODE
// (tests/CMakeLists.txt), so CTest lists the test as "Skipped"; the reason
// is in the test's output (`ctest -V`, or Testing/Temporary/LastTest.log).
#include <gtest/gtest.h>

namespace via::test {

constexpr int kSkipExitCode = 77;  // the Automake convention

/// The exit code of a finished run: a failure wins, then a skip. A binary
/// with a case that may skip registers that case as its own CTest test
/// (--gtest_filter), so the others still count as passed.
inline int exit_code(int run_all_tests_result, const ::testing::UnitTest& unit) {
  if (run_all_tests_result != 0 || unit.failed_test_count() > 0) return 1;
  return unit.skipped_test_count() > 0 ? kSkipExitCode : 0;
}

}  // namespace via::test
