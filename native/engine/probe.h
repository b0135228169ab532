// Oracle and benchmark hooks: run one program on scratch pages, outside any sequence. They are
// not part of the public API (the addon exposes them under `internal`; lib/internal/probe.ts
// wraps them for test/ and bench/). Each runs on the scheduler thread (Engine::Post), between
// iterations, and frees its pages before returning.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/runtime.h"

namespace dflash::engine::probe {

struct ScoreResult {
  std::vector<std::vector<float>> logits;  // per sequence: len x V
  std::vector<std::vector<float>> hidden;  // per sequence: len x n * H (when layers were asked)
};
// The target score program on independent sequences (positions 0 .. len-1), in one call.
ScoreResult ScoreLogits(Runtime& rt, const std::vector<std::vector<int32_t>>& batch, const std::vector<int32_t>& hidden_layers);

struct DraftResult {
  std::vector<float> logits;   // block x V
  std::vector<int32_t> draft;  // block tokens: [last, proposals]
};
// The drafter with `rows` context feature rows (rows x n * H) at positions 0 .. rows-1, then a
// block [last, mask ...] of `block` tokens at position rows.
DraftResult DraftLogits(Runtime& rt, const std::vector<float>& feats, int32_t rows, int32_t last, int32_t block);

// Median seconds of one verify execution (accept + hidden, as an iteration runs it, plus its host
// transfer) scoring `k` tokens in each of `rows` rows after `context` tokens; and of one drafter
// execution drafting `block` tokens per row after `context` context rows.
// The verify's token mask: kAllowAll as a batch no grammar constrains runs (the masking skipped),
// kConstrained with every other token refused (the masking runs), kNoInput a program built
// without the token_mask input (the cost the shared program adds, for bench:grammar).
enum class VerifyMask { kAllowAll, kConstrained, kNoInput };
double TimeVerify(Runtime& rt, int32_t rows, int32_t k, int32_t context, int32_t reps, VerifyMask mask = VerifyMask::kAllowAll);
double TimeDraft(Runtime& rt, int32_t rows, int32_t block, int32_t context, int32_t reps);

// Median seconds of the collectives alone that a tensor-parallel verify of `rows` rows x `k`
// tokens runs (models/parallel.h: one all-reduce of (R, K, H) activations after every o_proj and
// down_proj, one after the vocabulary-split embedding lookup), as one program on the runtime's
// mesh: each all-reduce waits for the one before, as a verify's do. 0 on a one-device mesh.
double TimeCollectives(Runtime& rt, int32_t rows, int32_t k, int32_t reps);

}  // namespace dflash::engine::probe
