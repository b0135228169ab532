// Sampling on the device. A row's distribution is its logits / temperature, restricted to the
// top-k values and then to the top-p nucleus, renormalised (the processing of z-lab/dflash's
// `_sampling_probs`). Top-k and top-p thresholds are found by bisection over the row (no sort),
// so tokens tied with the threshold are all kept. Randomness comes from the host as uniforms in
// [0, 1), one per draw, from a per-sequence seeded generator: the same seed gives the same tokens.
#pragma once
#include "hlo/builder.h"

namespace dflash::models {

// logits (N, V) f32, params (N, 3) f32 = per row (temperature, top_p in (0, 1], top_k >= 0 with
// 0 = off) -> probabilities (N, V) f32. Rows with temperature 0 (greedy rows of a mixed batch)
// get a finite, unused distribution. allowed (N, V) pred, if given (a grammar's mask,
// models/token_mask.h): only those tokens keep mass, restricted after the temperature scaling.
hlo::Value SamplingProbs(hlo::Builder& b, const hlo::Value& logits, const hlo::Value& params, const hlo::Value* allowed = nullptr);

// Inverse-CDF draw from each row of probs (N, V) (need not be normalised) with u (N) in [0, 1):
// the smallest token whose cumulative mass exceeds u * total. Returns s32 (N). The cumulative
// sum is two triangular matmuls over a (V / c, c) reshape, c ~ sqrt(V).
hlo::Value SampleRows(hlo::Builder& b, const hlo::Value& probs, const hlo::Value& u);

// probs[n, tokens[n]]   (probs (N, V), tokens s32 (N) -> f32 (N))
hlo::Value ProbOfTokens(hlo::Builder& b, const hlo::Value& probs, const hlo::Value& tokens);

// Repeats per-row parameters (R, C) for `times` consecutive rows each -> (R * times, C).
hlo::Value RepeatRows(hlo::Builder& b, const hlo::Value& x, int64_t times);

}  // namespace dflash::models
