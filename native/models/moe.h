// The sparse MoE block of a Qwen3-MoE decoder layer (transformers' Qwen3MoeSparseMoeBlock), as
// a standalone StableHLO building block. Per token x (H):
//   r = W_router x (E router logits);  p = softmax(r) in f32
//   S = the k experts of largest p (k = experts_per_token); w_e = p_e, e in S
//   if norm_topk_prob: w_e /= sum_{e in S} p_e
//   y = sum_{e in S} w_e * down_e(silu(gate_e x) * up_e x)
// Qwen3-MoE has no shared expert. tools/oracle/moe_ref.py is the same in numpy, checked against
// transformers' Qwen3MoeForCausalLM (test/14-moe-oracle.test.ts).
//
// Expert weights are stacked per layer, one (E, ...) tensor per projection, in the engine's dtype
// (numerics.h): dots take them as they are, accumulate in f32 and round to the activation dtype;
// the router's softmax and the routing weights are f32. Hub checkpoints (and transformers 5's save_pretrained) store
// one tensor per expert, "model.layers.N.mlp.experts.<e>.gate_proj.weight" (I, H); the weight
// loader builds slice e of the stacked buffer from tensor <e> (StackedExpertSources below).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/numerics.h"
#include "models/parallel.h"
#include "models/quant.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct MoeConfig {
  int64_t num_experts = 0;        // E   (config num_experts | num_local_experts)
  int64_t experts_per_token = 0;  // k   (num_experts_per_tok)
  int64_t intermediate = 0;       // I   (moe_intermediate_size)
  bool norm_topk_prob = false;    // renormalise the k selected probabilities to sum to 1
};

// One sparse layer's weights, as graph values.
struct MoeWeights {
  hlo::Value router;  // (E, H)     mlp.gate.weight
  hlo::Value gate;    // (E, I, H)  mlp.experts.*.gate_proj.weight, stacked
  hlo::Value up;      // (E, I, H)  mlp.experts.*.up_proj.weight, stacked
  hlo::Value down;    // (E, H, I)  mlp.experts.*.down_proj.weight, stacked
  // Narrow experts (quantized checkpoints): the stored inputs, gathered before expanding.
  NarrowStack gate_n, up_n, down_n;
};

struct MoeRouting {
  hlo::Value experts;  // (T, k) s32, in descending probability
  hlo::Value weights;  // (T, k) f32, the routing weights of those experts
};

// How the selected experts are computed. Both give the same result (up to f32 summation order).
enum class MoeImpl {
  // Every expert on every token, combined with the routing weights (zero for unselected
  // experts): E / k times the necessary work, but three large dense matmuls.
  kDense,
  // Only the selected experts: their weights are gathered per token, (T, k, I, H), and applied
  // with batched mat-vecs. Reads T * k expert matrices instead of E, so it wins while T * k is
  // below E (decode and drafting blocks); XLA:CPU has no ragged dot (see docs/DRAFTERS.md).
  kGathered,
  // kGathered when T * k < E, else kDense (measured in bench/results/moe-cpu.md).
  kAuto,
};

// The k largest of `scores` (T, E) per row, by k rounds of argmax each masking its winner out of
// the next: ids (T, k) s32 in descending order, and `values` (T, E) at those ids, (T, k).
MoeRouting TopK(hlo::Builder& b, const hlo::Value& scores, int64_t k, const hlo::Value& values);

// The routing as (T, E) weights, zero for the experts a token did not select (the dense kernels).
hlo::Value DenseRoutingWeights(hlo::Builder& b, const MoeRouting& r, int64_t experts);

// Router softmax -> top-k (k rounds of argmax + mask; the order of the logits is the order of
// the probabilities) -> optional renormalisation. x: (T, H) in the activation dtype; router:
// (E, H); the logits are rounded to the activation dtype first, as transformers' router Linear does.
MoeRouting MoeRoute(hlo::Builder& b, const hlo::Value& x, const hlo::Value& router, const MoeConfig& cfg,
                    const Numerics& n = {});

// The MoE block: x (T, H) -> (T, H), both in the activation dtype. Throws std::invalid_argument
// naming "moe" when a shape does not match cfg.
hlo::Value MoeMlp(hlo::Builder& b, const hlo::Value& x, const MoeWeights& w, const MoeConfig& cfg,
                  MoeImpl impl = MoeImpl::kAuto, const Numerics& n = {});

// The implementation kAuto picks for `tokens` tokens. Batch-invariant numerics (min_dot_rows >
// 1) always gather: switching kernels with the number of tokens in a call would make a token's
// result depend on its batch (and plain vs speculative decoding differ in the last bit).
MoeImpl ChooseMoeImpl(int64_t tokens, const MoeConfig& cfg, const Numerics& n = {});

// Appends the weight specs of one sparse layer's MLP under `prefix` ("model.layers.3."), in
// MoeWeights order: router, gate, up, down. The stacked specs' names hold '*' where the expert
// index goes ("model.layers.3.mlp.experts.*.gate_proj.weight", shape (E, I, H)).
// Over a tensor-parallel mesh each expert is split by its intermediate columns (gate/up dim 1,
// down dim 2), the router replicated: a token's selected experts run on every device, each on
// its columns, and the down projections' partial sums meet in one all-reduce.
void AppendMoeLayerSpecs(std::vector<WeightSpec>& specs, const std::string& prefix, int64_t hidden, const MoeConfig& cfg,
                         pjrt::DType dtype, const TensorParallel& tp = {});

// For a stacked spec (name containing '*'), the checkpoint tensors of its slices 0..E-1, in
// order; for any other spec, just its own name.
std::vector<std::string> StackedExpertSources(const WeightSpec& spec);

}  // namespace dflash::models
