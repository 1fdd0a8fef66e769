#pragma once
// The dtypes a model computes in, by their command-line names (--dtype of
// `via render` and `via edit-image`).
#include <c10/core/ScalarType.h>

#include <array>
#include <optional>
#include <string>

namespace via::model {

/// Every compute dtype, in the order help and messages list them.
inline constexpr std::array<c10::ScalarType, 3> kComputeDtypes = {c10::kFloat, c10::kBFloat16, c10::kHalf};

/// "fp32" | "bf16" | "fp16".
inline std::string compute_dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "fp32";
    case c10::kBFloat16: return "bf16";
    case c10::kHalf: return "fp16";
    default: return c10::toString(dtype);
  }
}

/// The dtype named `name`, or nullopt when it is none of kComputeDtypes'.
inline std::optional<c10::ScalarType> compute_dtype_from_name(const std::string& name) {
  for (const c10::ScalarType dtype : kComputeDtypes)
    if (compute_dtype_name(dtype) == name) return dtype;
  return std::nullopt;
}

/// --dtype auto: fp16 on CUDA, fp32 on the CPU.
inline c10::ScalarType auto_compute_dtype(bool cuda) { return cuda ? c10::kHalf : c10::kFloat; }

}  // namespace via::model
