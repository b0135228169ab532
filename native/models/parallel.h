// Tensor parallelism of the model graphs over the `devices` of one mesh axis ("tp"), in the
// Megatron layout vLLM and SGLang use. Each weight and cache says how it lies (WeightSpec /
// IoSpec sharding); XLA's SPMD partitioner splits the graph and inserts the collectives:
//
//   embed_tokens, lm_head (V, H)   rows split by vocabulary      (replicated when V % devices != 0)
//   q/k/v_proj (heads*hd, H)       rows split by heads           -> attention runs per device on its heads
//   o_proj (H, heads*hd)           columns split                 -> all-reduce of (R, K, H) after it
//   gate_up_proj (2, I, H)         intermediate split            -> silu(gate) * up per device
//   down_proj (H, I)               columns split                 -> all-reduce of (R, K, H) after it
//   experts gate/up (E, I, H), down (E, H, I): intermediate split (each expert Megatron-split); router replicated
//   k/v caches (L, N, S, kvh, hd)  KV heads split
//   norms, q_norm/k_norm, the drafter's fc / hidden_norm, DFlash2 convolutions and selector: replicated
//
// With fewer KV heads than devices each KV head is repeated devices / kv_heads times (vLLM's
// rule): k/v_proj stay replicated, every device computes all KV heads and keeps its own
// (repeated) one, and the caches hold `devices` heads, one per device.
#pragma once
#include <cstdint>
#include <string>

#include "hlo/builder.h"
#include <vector>

#include "models/config.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct TensorParallel {
  int64_t devices = 1;
  int64_t kv_heads = 0;      // KV heads in the caches (the model's, or `devices` when repeated)
  int64_t kv_repeat = 1;     // times each model KV head is repeated (> 1: k/v_proj replicated)
  bool split_vocab = false;  // embedding / lm_head rows split by vocabulary
  bool replicated = false;   // the model's own weights and caches whole on every device (a drafter's choice)

  bool spmd() const { return devices > 1; }
  hlo::Sharding Split(int dim) const { return spmd() && !replicated ? hlo::Sharding::Split(dim) : hlo::Sharding{}; }
  hlo::Sharding Vocab() const { return split_vocab ? hlo::Sharding::Split(0) : hlo::Sharding{}; }  // the target's, always
  hlo::Sharding KvProj() const { return kv_repeat == 1 ? Split(0) : hlo::Sharding{}; }
  hlo::Sharding Cache() const { return Split(3); }  // (L, N, S, kvh, hd)
};

// The layout of a target over `devices`; throws std::invalid_argument naming the config field
// and the numbers when the model does not split that way (heads, KV heads, intermediate sizes).
TensorParallel TargetParallel(const TargetConfig& c, int64_t devices);
// The drafter's, over the same devices (it shares the target's embedding and lm_head, split as the
// target's). `replicated`: every device holds the whole drafter and its context cache and runs all
// of it (no all-reduces; N times the drafter's memory) — Engine option drafterSharding.
TensorParallel DrafterParallel(const DrafterConfig& d, const TargetConfig& t, int64_t devices, bool replicated = false);

// What each of `devices` devices holds of these weights: split specs 1/devices, the rest whole.
int64_t BytesPerDevice(const std::vector<WeightSpec>& specs, int64_t devices);

// x: (..., kvh, hd) -> (..., kvh * repeat, hd), head j of the result = head j / repeat of x.
hlo::Value RepeatHeads(hlo::Builder& b, const hlo::Value& x, int64_t repeat);

}  // namespace dflash::models
