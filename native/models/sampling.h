// Sampling on the device, for plain and speculative decoding. A row's distribution is the
// target's (or drafter's) logits / temperature, restricted to the top-k values and then to the
// top-p nucleus, renormalised (the processing of z-lab/dflash's `_sampling_probs`). Top-k and
// top-p thresholds are found by bisection over the row (no sort), so tokens tied with the
// threshold are all kept. Randomness comes from the host as uniforms in [0, 1), one per draw,
// from a seeded generator: the same seed gives the same tokens.
#pragma once
#include "hlo/builder.h"

namespace dflash::models {

// params: f32[3] = (temperature > 0, top_p in (0, 1], top_k >= 0 with 0 = off)
// logits: (R, V) f32 -> probabilities (R, V) f32
hlo::Value SamplingProbs(hlo::Builder& b, const hlo::Value& logits, const hlo::Value& params);

// Inverse-CDF draw from each row of probs (R, V) (need not be normalised) with u (R) in [0, 1):
// the smallest token whose cumulative mass exceeds u * total. Returns s32 (R). The cumulative
// sum is two triangular matmuls over a (V / c, c) reshape, c ~ sqrt(V).
hlo::Value SampleRows(hlo::Builder& b, const hlo::Value& probs, const hlo::Value& u);

// probs[r, tokens[r]]   (probs (R, V), tokens s32 (R) -> f32 (R))
hlo::Value ProbOfTokens(hlo::Builder& b, const hlo::Value& probs, const hlo::Value& tokens);

// Packs an acceptance result like the greedy one: s32 (1, K + 1) = [a + 1, tokens[1..a], bonus, 0...]
// (tokens (1, K), a s32 (1), bonus s32 (1, 1)).
hlo::Value PackAccept(hlo::Builder& b, const hlo::Value& tokens, const hlo::Value& a, const hlo::Value& bonus);

// Lossless speculative sampling for one sequence (Leviathan et al. 2023): block tokens
// (1, K) = [last, d1 .. d_{K-1}], p (K, V) the target's processed distributions (row i predicts
// position i + 1), q (K, V) the drafter's (row i is the distribution d_i was drawn from),
// u (K + 1) uniforms. d_i is accepted while u_i * q_i(d_i) < p_{i-1}(d_i); at the first rejection
// the bonus token is drawn from norm(max(0, p_a - q_{a+1})) (p_a if that is empty), after K - 1
// acceptances from p_{K-1}. Returns the packed accept vector (1, K + 1).
hlo::Value SpeculativeAccept(hlo::Builder& b, const hlo::Value& tokens, const hlo::Value& p, const hlo::Value& q,
                             const hlo::Value& u);

}  // namespace dflash::models
