// Per-sequence state of the engine: where the sequence stands in the target's paged cache and,
// when it decodes speculatively, the drafter's context cache and the device buffers that carry
// one step's results into the next without a host round trip.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/engine.h"

namespace dflash::engine {

struct Engine::Sequence {
  std::vector<int32_t> prompt;
  int32_t max_new = 0;
  bool speculative = false;
  int32_t block = 1;              // tokens scored per step (drafter block size, or 1)

  std::vector<int32_t> block_table;  // target pages, in position order
  int64_t committed = 0;          // tokens whose K/V are in the cache (= position of last_token)
  int32_t last_token = -1;        // newest committed-to-output token, not yet scored by the target
  int64_t generated = 0;          // tokens returned to the caller
  bool prefilled = false;

  // Sampling (temperature > 0): parameters and the host generator of the uniforms.
  bool sampling = false;
  SamplingParams params;
  uint64_t rng = 0;
  std::unique_ptr<pjrt::Buffer> q;  // (1, B, V) drafter distributions of the pending draft

  // Drafter state (speculative only).
  int32_t ctx_capacity = 0;       // rows of ctx_k/ctx_v, a power of two
  int32_t ctx_len = 0;            // valid context rows (= accepted tokens with features)
  std::unique_ptr<pjrt::Buffer> ctx_k, ctx_v;  // (Ld, C, kvh, hd)
  std::unique_ptr<pjrt::Buffer> draft;         // (1, B) next block to verify: [last, d1 .. d_{B-1}]
};

}  // namespace dflash::engine
