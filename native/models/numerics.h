// How a model program computes, decided once per engine by the dtype policy
// (engine/dtype_policy.h) and baked into every program it builds:
//   dtype     weights and activations between ops (f32, bf16 or f16). Matmuls accumulate in f32
//             (dot_general's result type) and round to dtype; RMSNorm, RoPE, softmax, the accept
//             rule and sampling compute in f32 whatever dtype is.
//   kv_dtype  the paged KV caches (target and drafter context).
//   min_dot_rows  matmuls with fewer lhs rows get zero rows appended. XLA:CPU computes a row's
//             dot bit-for-bit the same for every row count from 2 (f32) or 3 (bf16) on, but
//             through other kernels below that (one row: a matrix-vector path; bf16 with two
//             rows: another), so padding makes every row's result independent of how many rows
//             share the call — a sequence decodes the same tokens alone, in a batch, plainly or
//             speculatively. For bf16 it is also the fast path (bench/NOTES.md, "dot variants").
//   key_chunk_slots  key slots the attention loop reads per iteration, at least (whole pages:
//             models/paged_attention.h). Small chunks read fewer unused slots at short contexts,
//             large ones run fewer iterations at long contexts: 64 on XLA:CPU (measured,
//             bench/NOTES.md), 512 on GPU/TPU, where an iteration costs kernel launches.
#pragma once
#include <string>

#include "hlo/dtype.h"
#include "pjrt/client.h"

namespace dflash::models {

struct Numerics {
  pjrt::DType dtype = pjrt::DType::kF32;
  pjrt::DType kv_dtype = pjrt::DType::kF32;
  int64_t min_dot_rows = 1;
  int64_t key_chunk_slots = 256;

  hlo::DType act() const;  // dtype as an hlo type
  hlo::DType kv() const;
  // "bf16 kv=bf16 rows>=3": part of every program key.
  std::string Key() const;
};

}  // namespace dflash::models
