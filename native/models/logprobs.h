// Log-probabilities for OpenAI's `logprobs`: the target's own distribution at a position is
// log_softmax of its raw logits (f32, before temperature / top-k / top-p: vLLM's default
// raw_logprobs). At every slot: the log-probability of one given token — the token committed
// there, or for a prompt the next prompt token — and the `top` most likely tokens with theirs.
// Packed into s32 (floats bit for bit) so they leave the device in the same transfer as the
// accept vector (models/accept.h):
//   (R, K * (1 + 2 * top)) = [log p(token_j) | top ids (K x top) | their log p (K x top)]
#pragma once
#include <cstdint>

#include "hlo/builder.h"

namespace dflash::models {

// logits (R, K, V) f32, tokens s32 (R, K) -> packed s32 (R, PackedLogprobsWidth(K, top)).
hlo::Value PackedLogprobs(hlo::Builder& b, const hlo::Value& logits, const hlo::Value& tokens, int64_t top);
inline int64_t PackedLogprobsWidth(int64_t k, int64_t top) { return k * (1 + 2 * top); }

// Host side: slot j of row `packed` (one row of the packed output, starting at its first logprob).
struct SlotLogprobs {
  float logprob = 0;
  const int32_t* top_ids = nullptr;  // `top` of them
  const int32_t* top_bits = nullptr;  // their log p, as f32 bits
};
SlotLogprobs UnpackSlot(const int32_t* packed, int64_t k, int64_t top, int64_t slot);

}  // namespace dflash::models
