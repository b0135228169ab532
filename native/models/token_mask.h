// Grammar-constrained decoding on the device (native/grammar/grammar.h computes the masks on the
// host). A verify with ScoreShape::grammar takes token_mask s32 (R, K, ceil(V / 32)): bit t % 32
// of word t / 32 allows token t at that slot (rows without a grammar send all ones). The target's
// logits are restricted to the allowed tokens before argmax, sampling and the accept rule, so a
// speculative step commits exactly what plain constrained decoding would (greedy), and sampled
// tokens follow the constrained target distribution.
#pragma once
#include "hlo/builder.h"

namespace dflash::models {

// Words of a packed mask over a vocabulary of v tokens.
inline int64_t MaskWords(int64_t v) { return (v + 31) / 32; }

// token_mask s32 (R, K, W) -> allowed pred (R, K, V).
hlo::Value AllowedTokens(hlo::Builder& b, const hlo::Value& token_mask, int64_t vocab);

// logits (R, K, V) f32 with the refused tokens at the lowest finite float (not -inf: the sampling
// bisections and softmax stay finite; an allowed token always exists, the host checks).
hlo::Value MaskLogits(hlo::Builder& b, const hlo::Value& logits, const hlo::Value& allowed);

}  // namespace dflash::models
