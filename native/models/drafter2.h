// DFlash2's pieces of the drafter program (docs/DRAFTERS.md §5), after z-lab/dflash dflash/model.py
// (GroupedDynamicCausalConv, CandidateSelector, DFlash2DraftModel.compute_logits / propose):
//
//  - a grouped dynamic causal convolution pair around every attention and MLP sub-layer of the
//    block. c = kernel_projection(x) of the sub-layer's normed input x gives per token, per side
//    s (0 = the sub-layer's input, 1 = its output), per tap and per group of conv_group_size
//    channels a coefficient added to the learned base_kernel[s, tap, channel]:
//        conv_s(y)[t, ch] = sum_tap (base[s, tap, ch] + c[t, s, tap, ch / group]) * y[t - tap, ch],
//    y[t - tap] = 0 before the block's first row. The context K/V (target features) skip it.
//  - the logits lm_head(h) * output_multiplier, then softcap * tanh(. / softcap);
//  - the candidate selector over block rows 1..B-1: the top-k candidates of each row (largest
//    logit first, ties to the lower id) scored by
//        score_i[k] = logit_i[cand_i[k]] + sum_r pred[prev, r] * g_i[r] * succ[cand_i[k], r],
//    g = hidden_projection(final-normed hidden), prev = the block's `last` token at row 1, then the
//    token chosen at row i - 1. Greedy rows take the best score (the first of equal ones);
//    sampled rows draw from q_i = softmax(score_i / temperature) over the candidates, which is the
//    distribution their proposal was drawn from (the verify's q, zero off the candidates).
#pragma once
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/config.h"
#include "models/layers.h"
#include "models/numerics.h"
#include "models/weight_spec.h"

namespace dflash::models {

// attention_conv.{base_kernel (2, K, H), kernel_projection.weight (2 K G, H)} and the same for
// mlp_conv, under `layer_prefix` ("layers.3.").
void AppendDFlash2ConvSpecs(std::vector<WeightSpec>& specs, const std::string& layer_prefix, const DrafterConfig& d, pjrt::DType t);
// candidate_selector.{hidden_projection.weight (rank, H), predecessor_codebook (V, rank),
// successor_codebook (V, rank)} (hub names: the codebooks have no ".weight").
void AppendDFlash2SelectorSpecs(std::vector<WeightSpec>& specs, const DrafterConfig& d, pjrt::DType t);

// One convolution pair's weights. base: (2, K, H); projection: (2 K G, H), G = H / group.
struct GroupedConv {
  hlo::Value base, projection;
  int64_t kernel = 0, group = 0;
};
GroupedConv TakeGroupedConv(const WeightInputs& w, const std::string& prefix, const DrafterConfig& d);  // prefix ".../attention_conv."

// kernel_projection(x) viewed as (R, T, 2, K, G)   (x: (R, T, H) act)
hlo::Value ConvCoefficients(hlo::Builder& b, const hlo::Value& x, const GroupedConv& conv, const Numerics& nm);

// conv_side(x) as above: x (R, T, H) act, base (2, K, H), coeffs (R, T, 2, K, G) -> (R, T, H) act;
// computed in f32, row t reads rows t - tap >= 0 of its own block only.
hlo::Value GroupedCausalConv(hlo::Builder& b, const hlo::Value& x, const hlo::Value& base, const hlo::Value& coeffs,
                             int64_t side, int64_t group, const Numerics& nm);

// The k largest entries of each row of x (..., V) f32: (values f32 (..., k), ids s32 (..., k)),
// largest first, ties to the lower id (k passes of argmax).
std::pair<hlo::Value, hlo::Value> TopK(hlo::Builder& b, const hlo::Value& x, int64_t k);

// The drafter head of a DFlash2 block. hn: final-normed hidden (R, B, H) act; lm_head (V, H);
// last s32 (R); with sampling params f32 (R, 3) and uniforms f32 (R, B) (slot i draws block
// token i). proposals s32 (R, B - 1); probs f32 (R, B, V) (row 0 zero) when sampling; logits
// f32 (R, B, V) (after the transforms) when want_logits.
struct DraftHead {
  hlo::Value proposals, probs, logits;
};
DraftHead DFlash2Head(hlo::Builder& b, const WeightInputs& w, const std::string& prefix, const DrafterConfig& d,
                      const hlo::Value& hn, const hlo::Value& lm_head, const hlo::Value& last, const hlo::Value* params,
                      const hlo::Value* uniforms, bool want_logits, const Numerics& nm);

}  // namespace dflash::models
