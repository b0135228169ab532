// How a model program computes, decided once per engine by the dtype policy
// (engine/dtype_policy.h) and baked into every program it builds:
//   dtype     weights and activations between ops (f32, bf16 or f16). Matmuls accumulate in f32
//             (dot_general's result type) and round to dtype; RMSNorm, RoPE, softmax, the accept
//             rule and sampling compute in f32 whatever dtype is.
//   kv_dtype  the paged KV caches (target and drafter context).
//   pad_single_row_dots  XLA:CPU runs 16-bit dots with one lhs row ~8x slower than with two
//             (bench/NOTES.md, "dot variants"): such dots get a zero row appended.
#pragma once
#include <string>

#include "hlo/dtype.h"
#include "pjrt/client.h"

namespace dflash::models {

struct Numerics {
  pjrt::DType dtype = pjrt::DType::kF32;
  pjrt::DType kv_dtype = pjrt::DType::kF32;
  bool pad_single_row_dots = false;

  hlo::DType act() const;  // dtype as an hlo type
  hlo::DType kv() const;
  // "bf16 kv=bf16 pad1": part of every program key.
  std::string Key() const;
};

}  // namespace dflash::models
