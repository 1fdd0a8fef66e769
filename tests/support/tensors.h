#pragma once
// Tensors for exactness tests: random bit patterns of any dtype, and a check
// that two tensors are the same to the byte.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>

namespace via::test {

/// Random bits of `dtype` from the global generator (every pattern possible,
/// NaN payloads included; 0/1 for bool).
inline at::Tensor random_bits(at::ScalarType dtype, at::IntArrayRef shape) {
  const at::Tensor bits = at::randint(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                                      shape, at::TensorOptions().dtype(at::kLong));
  if (dtype == at::kBool) return bits.remainder(2).to(at::kBool);
  const int64_t size = c10::elementSize(dtype);
  const at::ScalarType carrier = size == 8 ? at::kLong : size == 4 ? at::kInt : size == 2 ? at::kShort : at::kByte;
  return bits.to(carrier).view(dtype);
}

/// The same on every process for the same seed (it reseeds the global generator).
inline at::Tensor random_bits(at::ScalarType dtype, at::IntArrayRef shape, uint64_t seed) {
  at::manual_seed(seed);
  return random_bits(dtype, shape);
}

/// Same dtype, shape and bytes (on any device).
inline void expect_identical(const at::Tensor& expected, const at::Tensor& actual, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what;
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const at::Tensor a = actual.cpu().contiguous(), e = expected.cpu().contiguous();
  ASSERT_EQ(a.nbytes(), e.nbytes()) << what;
  EXPECT_EQ(std::memcmp(a.data_ptr(), e.data_ptr(), e.nbytes()), 0) << what << ": contents differ";
}

}  // namespace via::test
