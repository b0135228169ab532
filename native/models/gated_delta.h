// Qwen3.5's Gated DeltaNet token mixer (transformers' Qwen3_5GatedDeltaNet, 5.25), the layer of a
// hybrid target that keeps a recurrent state instead of KV pages (docs/ARCHITECTURE.md, "Layer
// groups"). Per value head a (key_dim x value_dim) f32 state S evolves token by token:
//   S <- exp(g) S;  delta = beta (v - S^T k);  S <- S + k delta^T;  o = S^T q
// with q, k L2-normalised (q also scaled by key_dim^-1/2) after a depthwise causal convolution
// (kernel 4) + SiLU over the projected [q | k | v] channels, beta = sigmoid(in_proj_b x) and
// g = -exp(A_log) softplus(in_proj_a x + dt_bias). The output goes through a gated RMSNorm
// (norm(o) * silu(z)) and out_proj.
//
// A row's state between steps is the conv window (its last conv_kernel - 1 inputs) and S, kept in
// the engine's state arrays at the row's slot. A step of K tokens runs the recurrence once over
// them (outputs for every position); what it commits is decided afterwards: GatedDeltaCommit
// replays the same steps over the first `count` tokens only (a verify's accepted prefix), so a
// rejected draft leaves no trace and the committed state is bit-identical to the one plain
// decoding of the same tokens reaches.
#pragma once
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/config.h"
#include "models/layers.h"
#include "models/numerics.h"
#include "models/parallel.h"
#include "models/program.h"
#include "models/weight_spec.h"

namespace dflash::models {

// Tensor specs of one layer's mixer under `prefix` ("model.layers.3.linear_attn."): HF names.
// A_log and dt_bias stay f32 (the decay is computed in f32 whatever the model's dtype). Over a
// tensor-parallel mesh of D devices everything splits by heads: in_proj_qkv's and conv1d's rows
// are regrouped device-major at load — [q | k | v] of device 0's heads, then device 1's, ... —
// so each device's rows are one contiguous part (with D = 1 the checkpoint's own order);
// in_proj_z / b / a, A_log and dt_bias by value heads; out_proj by its input columns (XLA sums
// the partial products: one all-reduce per layer).
void AppendGatedDeltaSpecs(std::vector<WeightSpec>& specs, const std::string& prefix, int64_t hidden, const LinearAttention& c,
                           pjrt::DType dtype, const TensorParallel& tp);

struct GatedDeltaWeights {
  hlo::Value qkv, z, b, a;  // in_proj_*: (C, H), (Hv dv, H), (Hv, H), (Hv, H)
  hlo::Value conv;          // conv1d.weight (C, 1, kernel)
  hlo::Value dt_bias, a_log;  // (Hv) f32
  hlo::Value norm;          // (dv), the gated norm's weight
  hlo::Value out;           // out_proj (H, Hv dv)
};
GatedDeltaWeights TakeGatedDelta(const WeightInputs& w, const std::string& prefix);

// One layer's state of R rows.
struct DeltaState {
  hlo::Value conv;  // (R, kernel - 1, C) act: the last inputs of the convolution, oldest first
  hlo::Value ssm;   // (R, Hv, dk, dv) f32
};

// What a step computed, and what the commit replays.
struct DeltaPass {
  hlo::Value out;         // (R, K, H) act: the mixer's output (before the residual)
  hlo::Value window;      // (R, kernel - 1 + K, C) act: the conv state, then this step's inputs
  hlo::Value k, v;        // (R, K, Hv, dk), (R, K, Hv, dv) f32, as the recurrence reads them
  hlo::Value g, beta;     // (R, K, Hv) f32
  hlo::Value ssm0;        // the state the step started from
  hlo::Value ssm_valid;   // the state after every valid token (positions >= 0, a prefix of the row)
};

// Prefill programs run whole chunks of this many tokens in the chunked form of the recurrence
// (a unit-lower triangular solve and (C x C) products per chunk instead of C dependent steps).
constexpr int64_t kDeltaChunk = 64;

// x: (R, K, H) act, the normed input; valid: (R, K) pred (a prefix of each row's slots). The
// channels of the conv (weights, window, state) are in the device-major order of the specs.
// chunk_positions: the step's positions (R, K) s32 where it may run the chunked form (a prefill,
// whose commit is its valid tokens; K a multiple of kDeltaChunk): whole chunks from a row start on
// a multiple of kDeltaChunk, the rest token by token. Null: token by token (a verify's commit
// replays the same per-token steps).
DeltaPass GatedDeltaForward(hlo::Builder& b, const hlo::Value& x, const GatedDeltaWeights& w, const LinearAttention& c, float eps,
                            const DeltaState& state0, const hlo::Value& valid, const Numerics& n, const TensorParallel& tp,
                            const hlo::Value* chunk_positions = nullptr);

// The state after the first count[r] tokens of row r (count: (R) s32 in [0, K]).
DeltaState GatedDeltaCommit(hlo::Builder& b, const DeltaPass& pass, const hlo::Value& count, const LinearAttention& c);
// The same when the commit is every valid token (prefill chunks, plain decode).
DeltaState GatedDeltaCommitValid(hlo::Builder& b, const DeltaPass& pass, const hlo::Value& valid, const LinearAttention& c);

// The engine's state arrays: conv (Ll, M, kernel - 1, C) act and ssm (Ll, M, Hv, dk, dv) f32,
// M slots (one per sequence of the engine, the last one the trash slot of padding rows).
std::vector<int64_t> ConvStateDims(const LinearAttention& c, int64_t linear_layers, int64_t slots);
std::vector<int64_t> SsmStateDims(const LinearAttention& c, int64_t linear_layers, int64_t slots);
// How the state arrays lie over a tensor-parallel mesh: conv by channels (device-major), ssm by
// value heads.
hlo::Sharding ConvStateSharding(const TensorParallel& tp);
hlo::Sharding SsmStateSharding(const TensorParallel& tp);
// Rows' states of linear layer `index` (slots: (R) s32); rows where `fresh` (R) pred holds start
// from zeros (a sequence's first token: a preempted or re-admitted sequence starts over).
DeltaState ReadDeltaState(hlo::Builder& b, const hlo::Value& conv, const hlo::Value& ssm, int64_t index, const hlo::Value& slots,
                          const hlo::Value& fresh);
// The arrays with rows' states written at their slots (padding rows all write the trash slot).
void WriteDeltaState(hlo::Builder& b, hlo::Value& conv, hlo::Value& ssm, int64_t index, const hlo::Value& slots, const DeltaState& s);

// Prefix caching of per-sequence state: one sequence's state (every linear layer's conv window and
// S; with ring_pages > 0 its sliding layers' K/V rings, models/sliding_ring.h) copied between the
// running arrays — conv_state, ssm_state (Ll, M, ...), swa_k_cache, swa_v_cache — and the
// snapshots — conv_snap, ssm_snap (Ll, X, ...), swa_k_snap, swa_v_snap — all donated into the
// outputs of the same names (running arrays first). `save`: running slot `from` s32 (1) into
// snapshot `to` s32 (1); else snapshot `from` into slot `to`.
Program BuildStateCopy(const TargetConfig& c, const Numerics& n, int64_t slots, int64_t snapshots, bool save, int64_t devices,
                       int64_t ring_pages = 0, int64_t page_size = 0);

}  // namespace dflash::models
