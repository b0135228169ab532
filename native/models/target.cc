// Target score program (see target.h and docs/ARCHITECTURE.md). Numerics follow HF
// transformers' Qwen3/Llama modeling code in f32: RMSNorm, q_norm/k_norm per head before RoPE
// (Qwen3), rotate_half RoPE, GQA, f32 softmax, SiLU MLP, final norm, lm_head.
#include "models/target.h"
#include "models/sampling.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>

#include "hlo/builder.h"
#include "models/layers.h"
#include "models/rope.h"

namespace dflash::models {

using hlo::Builder;
using hlo::DType;
using hlo::Value;

namespace {

void Validate(const TargetConfig& c) {
  if (c.family != "qwen3" && c.family != "llama") throw std::invalid_argument("target: family must be qwen3 or llama, got " + c.family);
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0)
    throw std::invalid_argument("target: config sizes must be positive");
  if (c.num_heads % c.num_kv_heads != 0) throw std::invalid_argument("target: num_heads must be a multiple of num_kv_heads");
  if (c.head_dim % 2 != 0) throw std::invalid_argument("target: head_dim must be even (RoPE)");
}

struct LayerWeights {
  Value ln1, q, k, v, o, q_norm, k_norm, ln2, gate, up, down;
};

// Greedy acceptance, packed as s32[Bt, K + 1]: a = leading i in [1, K) with tokens[i] ==
// argmax[i - 1] (a padding token never matches); accept = [a + 1, tokens[1..a], argmax[a], 0...].
Value Accept(Builder& b, const Value& tokens, const Value& positions, const Value& argmax) {
  const int64_t bt = tokens.shape[0], k = tokens.shape[1];
  const Value zero = b.Scalar(0, DType::kS32);
  Value a = b.Splat(0, {bt}, DType::kS32);
  if (k > 1) {
    const Value match = b.And(b.Compare(b.SliceAxis(tokens, 1, 1, k - 1), b.SliceAxis(argmax, 1, 0, k - 1), hlo::Cmp::kEQ),
                              b.Compare(b.SliceAxis(positions, 1, 1, k - 1), zero, hlo::Cmp::kGE));  // (Bt, K-1)
    const Value idx = b.Iota({bt, k - 1}, DType::kS32, 1);
    // The first mismatch index, or K - 1 when everything matches.
    a = b.Reduce(b.Select(match, b.Scalar(static_cast<double>(k - 1), DType::kS32), idx), {1}, hlo::ReduceKind::kMin);
  }
  const Value at_a = b.Compare(b.Iota({bt, k}, DType::kS32, 1), b.Reshape(a, {bt, 1}), hlo::Cmp::kEQ);
  const Value bonus = b.Reshape(b.Reduce(b.Select(at_a, argmax, zero), {1}, hlo::ReduceKind::kSum), {bt, 1});  // argmax[a]
  return PackAccept(b, tokens, a, bonus);
}

}  // namespace

std::vector<WeightSpec> TargetWeightSpecs(const TargetConfig& c) {
  Validate(c);
  const pjrt::DType t = c.weight_dtype;
  const int64_t h = c.hidden_size;
  std::vector<WeightSpec> s;
  s.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, t});
  for (int64_t i = 0; i < c.num_layers; ++i)
    AppendDecoderLayerSpecs(s, "model.layers." + std::to_string(i) + ".", h, c.num_heads, c.num_kv_heads, c.head_dim,
                            c.intermediate_size, c.qk_norm, t);
  s.push_back({"model.norm.weight", {h}, t});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {c.vocab_size, h}, t});
  return s;
}

Program BuildTargetScore(const TargetConfig& c, const ScoreShape& sh) {
  Validate(c);
  const int64_t bt = sh.batch, k = sh.tokens, p = sh.pages_per_seq, s = sh.page_size, n = sh.total_pages;
  if (bt <= 0 || k <= 0 || p <= 0 || s <= 0 || n <= 0) throw std::invalid_argument("target score: shape sizes must be positive");
  for (int32_t id : sh.hidden_layers)
    if (id < 0 || id >= c.num_layers)
      throw std::invalid_argument("target score: hidden layer " + std::to_string(id) + " out of range [0, " + std::to_string(c.num_layers) + ")");
  const int64_t L = c.num_layers, hd = c.head_dim, heads = c.num_heads, kvh = c.num_kv_heads;
  const int64_t T = p * s;  // key slots visible to one sequence

  Builder b;
  // ---- parameters ----
  const auto specs = TargetWeightSpecs(c);
  std::vector<Value> w;
  for (const auto& spec : specs) w.push_back(b.Parameter(spec.shape, ToHlo(spec.dtype)));
  size_t wi = 0;
  const Value embed = w[wi++];
  std::vector<LayerWeights> layers(L);
  for (auto& lw : layers) {
    lw.ln1 = w[wi++];
    lw.q = w[wi++];
    lw.k = w[wi++];
    lw.v = w[wi++];
    lw.o = w[wi++];
    if (c.qk_norm) {
      lw.q_norm = w[wi++];
      lw.k_norm = w[wi++];
    }
    lw.ln2 = w[wi++];
    lw.gate = w[wi++];
    lw.up = w[wi++];
    lw.down = w[wi++];
  }
  const Value final_norm = w[wi++];
  const Value lm_head = c.tie_word_embeddings ? embed : w[wi++];
  Value k_cache = b.Parameter({L, n, s, kvh, hd}, DType::kF32, 0);
  Value v_cache = b.Parameter({L, n, s, kvh, hd}, DType::kF32, 1);
  const Value tokens = b.Parameter({bt, k}, DType::kS32);     // (Bt, K)
  const Value positions = b.Parameter({bt, k}, DType::kS32);  // (Bt, K), -1 = padding
  const Value table = b.Parameter({bt, p}, DType::kS32);      // (Bt, P)
  Value sample_params, uniforms, draft_probs;
  if (sh.sampling) {
    if (sh.want_accept && bt != 1) throw std::invalid_argument("target score: speculative sampling needs batch 1");
    sample_params = b.Parameter({3}, DType::kF32);                 // (temperature, top_p, top_k)
    uniforms = b.Parameter({bt, k + 1}, DType::kF32);              // (Bt, K + 1)
    if (sh.want_accept) draft_probs = b.Parameter({bt, k, c.vocab_size}, DType::kF32);  // (1, K, V)
  }

  // ---- cache addressing ----
  // Token at position q lives in page table[b, q / S], slot q % S; padding goes to page 0 slot 0
  // (the trash page, never handed to a sequence).
  const Value zero = b.Scalar(0, DType::kS32);
  const Value valid = b.Compare(positions, zero, hlo::Cmp::kGE);  // (Bt, K)
  const Value pc = b.Max(positions, zero);
  const Value page_idx = b.Div(pc, b.Scalar(static_cast<double>(s), DType::kS32));  // (Bt, K)
  const Value row = b.Iota({bt, k, 1}, DType::kS32, 0);
  const Value page = b.Gather(table, b.Concatenate({row, b.Reshape(page_idx, {bt, k, 1})}, 2),
                              hlo::GatherDims{{}, {0, 1}, {0, 1}, 2}, {1, 1});  // (Bt, K)
  const Value page_w = b.Reshape(b.Select(valid, page, zero), {bt, k, 1});
  const Value slot_w = b.Reshape(b.Select(valid, b.Rem(pc, b.Scalar(static_cast<double>(s), DType::kS32)), zero), {bt, k, 1});
  const Value table3 = b.Reshape(table, {bt, p, 1});
  // Query at position q sees key slot j (j = page_index * S + slot) iff j <= q.
  const Value key_pos = b.Iota({bt, k, T}, DType::kS32, 2);
  const Value visible = b.Compare(key_pos, b.Reshape(positions, {bt, k, 1}), hlo::Cmp::kLE);  // (Bt, K, T)
  const RopeTables rope = RopeCosSin(b, positions, RopeInvFreq(hd, c.rope_theta, c.rope_llama3));

  // ---- layers ----
  Value h = b.Convert(b.Take(embed, tokens), DType::kF32);  // (Bt, K, H)
  std::map<int32_t, Value> after;                            // layer id -> output (Bt, K, H)
  const bool want_head = sh.want_logits || sh.want_argmax || sh.want_accept;
  for (int64_t l = 0; l < L; ++l) {
    const LayerWeights& lw = layers[l];
    const Value x = RmsNorm(b, h, lw.ln1, c.rms_norm_eps);
    Value q = SplitHeads(b, Dense(b, x, lw.q), heads, hd);    // (Bt, K, heads, hd)
    Value kk = SplitHeads(b, Dense(b, x, lw.k), kvh, hd);     // (Bt, K, kvh, hd)
    const Value vv = SplitHeads(b, Dense(b, x, lw.v), kvh, hd);
    if (c.qk_norm) {
      q = RmsNorm(b, q, lw.q_norm, c.rms_norm_eps);
      kk = RmsNorm(b, kk, lw.k_norm, c.rms_norm_eps);
    }
    q = ApplyRope(b, q, rope);
    kk = ApplyRope(b, kk, rope);

    // Write this chunk's K/V first: (layer, page, slot) per token, window (kvh, hd).
    const Value li = b.Splat(static_cast<double>(l), {bt, k, 1}, DType::kS32);
    const Value widx = b.Concatenate({li, page_w, slot_w}, 2);  // (Bt, K, 3)
    const hlo::ScatterDims sd{{2, 3}, {0, 1, 2}, {0, 1, 2}, 2};
    k_cache = b.Scatter(k_cache, widx, kk, sd);
    v_cache = b.Scatter(v_cache, widx, vv, sd);

    // Then read the sequence's pages back: (Bt, P, S, kvh, hd) -> (Bt, T, kvh, hd).
    const Value ridx = b.Concatenate({b.Splat(static_cast<double>(l), {bt, p, 1}, DType::kS32), table3}, 2);  // (Bt, P, 2)
    const hlo::GatherDims gd{{2, 3, 4}, {0, 1}, {0, 1}, 2};
    const hlo::Shape slice{1, 1, s, kvh, hd};
    const Value keys = b.Reshape(b.Gather(k_cache, ridx, gd, slice), {bt, T, kvh, hd});
    const Value vals = b.Reshape(b.Gather(v_cache, ridx, gd, slice), {bt, T, kvh, hd});

    const Value attn = Attention(b, q, keys, vals, visible);  // (Bt, K, heads * hd)
    h = b.Add(h, Dense(b, attn, lw.o));
    h = b.Add(h, SiluMlp(b, RmsNorm(b, h, lw.ln2, c.rms_norm_eps), lw.gate, lw.up, lw.down));
    if (std::count(sh.hidden_layers.begin(), sh.hidden_layers.end(), static_cast<int32_t>(l))) after[l] = h;
  }
  const Value hn = RmsNorm(b, h, final_norm, c.rms_norm_eps);  // (Bt, K, H)
  // HF's hidden_states[L] (after the last layer) is the final-normed state, not the raw output.
  if (after.count(static_cast<int32_t>(L - 1))) after[static_cast<int32_t>(L - 1)] = hn;

  // ---- outputs ----
  Program prog;
  std::vector<Value> results{k_cache, v_cache};
  prog.output_names = {"k_cache", "v_cache"};
  Value logits, argmax;
  if (want_head) {
    logits = Dense(b, hn, lm_head);  // (Bt, K, V)
    if (!sh.sampling) argmax = b.Argmax(logits, 2);    // (Bt, K)
  }
  Value probs;  // (Bt * K, V) processed target distributions when sampling
  if (sh.sampling && want_head) {
    const int64_t v = c.vocab_size;
    probs = SamplingProbs(b, b.Reshape(logits, {bt * k, v}), sample_params);
    // "argmax" is a draw from each row's distribution.
    argmax = b.Reshape(SampleRows(b, probs, b.Reshape(b.SliceAxis(uniforms, 1, 0, k), {bt * k})), {bt, k});
  }
  if (sh.want_argmax) {
    results.push_back(argmax);
    prog.output_names.push_back("argmax");
  }
  if (sh.want_logits) {
    results.push_back(logits);
    prog.output_names.push_back("logits");
  }
  if (!sh.hidden_layers.empty()) {
    std::vector<Value> parts;
    for (int32_t id : sh.hidden_layers) parts.push_back(after.at(id));
    results.push_back(b.Concatenate(parts, 2));  // (Bt, K, n * H)
    prog.output_names.push_back("hidden");
  }
  if (sh.want_accept) {
    results.push_back(sh.sampling ? SpeculativeAccept(b, tokens, probs, b.Reshape(draft_probs, {k, c.vocab_size}),
                                                      b.Reshape(uniforms, {k + 1}))
                                  : Accept(b, tokens, positions, argmax));
    prog.output_names.push_back("accept");
  }
  prog.num_params = b.num_params();
  prog.num_outputs = static_cast<int>(results.size());
  prog.mlir = b.Finish(results);
  return prog;
}

}  // namespace dflash::models
