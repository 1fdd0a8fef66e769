// main() of the test binaries run as one process: GoogleTest's own, except
// that a run with a skipped test exits with via::test::kSkipExitCode.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/support/skip.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  const int code = via::test::exit_code(result, unit);
  if (code == via::test::kSkipExitCode)
    std::printf("SKIPPED: %d of %d test(s) did not run; the reason is printed above\n", unit.skipped_test_count(),
                unit.test_to_run_count());
  return code;
}
