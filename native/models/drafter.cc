// DFlash drafter program (see drafter.h). Per draft layer, with h the block's hidden state and
// fused = hidden_norm(fc(feats)) the new context rows:
//   x = input_layernorm(h); q = rope(q_norm(q_proj(x)))            (block rows only)
//   k = rope(k_norm(k_proj(.))), v = v_proj(.) for fused (context, no input_layernorm) and x
//   context K/V rows go to the per-layer cache; attention is non-causal over
//   [ctx rows < ctx_len + n ; block]; then the usual residual + SiLU MLP.
#include "models/drafter.h"
#include "models/sampling.h"

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

struct DraftLayer {
  Value ln1, q, k, v, o, q_norm, k_norm, ln2, gate, up, down;
};

void Validate(const DrafterConfig& d, const TargetConfig& t) {
  if (d.num_layers <= 0 || d.hidden_size <= 0 || d.intermediate_size <= 0 || d.num_heads <= 0 || d.num_kv_heads <= 0 ||
      d.head_dim <= 0)
    throw std::invalid_argument("drafter: config sizes must be positive");
  if (d.num_heads % d.num_kv_heads != 0) throw std::invalid_argument("drafter: num_heads must be a multiple of num_kv_heads");
  if (d.head_dim % 2 != 0) throw std::invalid_argument("drafter: head_dim must be even (RoPE)");
  if (d.target_layer_ids.empty()) throw std::invalid_argument("drafter: target_layer_ids is empty");
  if (d.hidden_size != t.hidden_size)
    throw std::invalid_argument("drafter: hidden_size " + std::to_string(d.hidden_size) + " differs from the target's " +
                                std::to_string(t.hidden_size));
  if (d.mask_token_id < 0 || d.mask_token_id >= t.vocab_size) throw std::invalid_argument("drafter: mask_token_id outside the vocabulary");
}

}  // namespace

std::vector<WeightSpec> DrafterWeightSpecs(const DrafterConfig& d) {
  const pjrt::DType t = d.weight_dtype;
  const int64_t h = d.hidden_size;
  const int64_t n = static_cast<int64_t>(d.target_layer_ids.size());
  std::vector<WeightSpec> s;
  s.push_back({"fc.weight", {h, n * h}, t});
  s.push_back({"hidden_norm.weight", {h}, t});
  for (int64_t i = 0; i < d.num_layers; ++i)
    AppendDecoderLayerSpecs(s, "layers." + std::to_string(i) + ".", h, d.num_heads, d.num_kv_heads, d.head_dim,
                            d.intermediate_size, /*qk_norm=*/true, t);
  s.push_back({"norm.weight", {h}, t});
  return s;
}

Program BuildDrafter(const DrafterConfig& d, const TargetConfig& t, const DraftShape& sh) {
  Validate(d, t);
  const int64_t C = sh.ctx_capacity, A = sh.append_rows, B = sh.block;
  if (C <= 0 || A <= 0 || B < 2) throw std::invalid_argument("drafter: need ctx_capacity > 0, append_rows > 0, block >= 2");
  if (A > C) throw std::invalid_argument("drafter: append_rows " + std::to_string(A) + " exceed ctx_capacity " + std::to_string(C));
  const int64_t H = d.hidden_size, hd = d.head_dim, heads = d.num_heads, kvh = d.num_kv_heads, Ld = d.num_layers;
  const int64_t nfeat = static_cast<int64_t>(d.target_layer_ids.size()) * H;

  Builder b;
  // ---- parameters ----
  std::vector<Value> w;
  for (const auto& spec : DrafterWeightSpecs(d)) w.push_back(b.Parameter(spec.shape, ToHlo(spec.dtype)));
  size_t wi = 0;
  const Value fc = w[wi++], hidden_norm = w[wi++];
  std::vector<DraftLayer> layers(Ld);
  for (auto& lw : layers) {
    lw.ln1 = w[wi++];
    lw.q = w[wi++];
    lw.k = w[wi++];
    lw.v = w[wi++];
    lw.o = w[wi++];
    lw.q_norm = w[wi++];
    lw.k_norm = w[wi++];
    lw.ln2 = w[wi++];
    lw.gate = w[wi++];
    lw.up = w[wi++];
    lw.down = w[wi++];
  }
  const Value final_norm = w[wi++];
  const Value embed = b.Parameter({t.vocab_size, H}, ToHlo(t.weight_dtype));
  const Value lm_head = b.Parameter({t.vocab_size, H}, ToHlo(t.weight_dtype));
  Value ctx_k = b.Parameter({Ld, C, kvh, hd}, DType::kF32, 0);
  Value ctx_v = b.Parameter({Ld, C, kvh, hd}, DType::kF32, 1);
  const Value feats = b.Parameter({1, A, nfeat}, DType::kF32);
  const Value accept = b.Parameter({1, A + 1}, DType::kS32);
  const Value ctx_len = b.Parameter({}, DType::kS32);
  Value sample_params, uniforms;
  if (sh.sampling) {
    sample_params = b.Parameter({3}, DType::kF32);
    uniforms = b.Parameter({1, B}, DType::kF32);
  }

  // ---- inputs derived from accept ----
  const Value zero = b.Scalar(0, DType::kS32);
  const Value n = b.Reshape(b.SliceAxis(accept, 1, 0, 1), {});                 // rows valid this call
  const Value last = b.DynamicSlice(accept, {zero, n}, {1, 1});                 // (1, 1) last committed token
  const Value valid_ctx = b.Add(ctx_len, n);                                    // context rows after the write
  const Value ctx_pos = b.Add(b.Iota({1, A}, DType::kS32, 1), ctx_len);        // (1, A)
  const Value blk_pos = b.Add(b.Iota({1, B}, DType::kS32, 1), valid_ctx);      // (1, B)
  const std::vector<float> inv = RopeInvFreq(hd, d.rope_theta, d.rope_llama3);
  const RopeTables ctx_rope = RopeCosSin(b, ctx_pos, inv), blk_rope = RopeCosSin(b, blk_pos, inv);
  // Keys are [C context rows ; B block rows]: a context row is visible iff it is valid.
  const Value key = b.Iota({1, B, C + B}, DType::kS32, 2);
  const Value visible = b.Or(b.Compare(key, valid_ctx, hlo::Cmp::kLT),
                             b.Compare(key, b.Scalar(static_cast<double>(C), DType::kS32), hlo::Cmp::kGE));  // (1, B, C+B)

  // ---- block input: embed[[last, mask x (B-1)]] * input_embedding_scale ----
  const Value first = b.Compare(b.Iota({1, B}, DType::kS32, 1), zero, hlo::Cmp::kEQ);
  const Value ids = b.Select(first, last, b.Scalar(static_cast<double>(d.mask_token_id), DType::kS32));  // (1, B)
  Value h = b.Convert(b.Take(embed, ids), DType::kF32);                                                  // (1, B, H)
  if (d.input_embedding_scale != 1.0f) h = b.Mul(h, b.Scalar(d.input_embedding_scale, DType::kF32));

  // ---- context: fused = hidden_norm(fc(feats)), no input_layernorm ----
  const Value fused = RmsNorm(b, Dense(b, feats, fc), hidden_norm, d.rms_norm_eps);  // (1, A, H)

  for (int64_t l = 0; l < Ld; ++l) {
    const DraftLayer& lw = layers[l];
    const Value x = RmsNorm(b, h, lw.ln1, d.rms_norm_eps);  // (1, B, H)
    const Value q = ApplyRope(b, RmsNorm(b, SplitHeads(b, Dense(b, x, lw.q), heads, hd), lw.q_norm, d.rms_norm_eps), blk_rope);
    const Value kb = ApplyRope(b, RmsNorm(b, SplitHeads(b, Dense(b, x, lw.k), kvh, hd), lw.k_norm, d.rms_norm_eps), blk_rope);
    const Value vb = SplitHeads(b, Dense(b, x, lw.v), kvh, hd);  // (1, B, kvh, hd)
    const Value kc = ApplyRope(b, RmsNorm(b, SplitHeads(b, Dense(b, fused, lw.k), kvh, hd), lw.k_norm, d.rms_norm_eps), ctx_rope);
    const Value vc = SplitHeads(b, Dense(b, fused, lw.v), kvh, hd);  // (1, A, kvh, hd)
    // Rows [ctx_len, ctx_len + A) of layer l; rows past ctx_len + n are overwritten next call.
    const Value li = b.Scalar(static_cast<double>(l), DType::kS32);
    ctx_k = b.DynamicUpdateSlice(ctx_k, kc, {li, ctx_len, zero, zero});
    ctx_v = b.DynamicUpdateSlice(ctx_v, vc, {li, ctx_len, zero, zero});
    // Layer l's cache, with the leading 1 doubling as the batch axis: (1, C, kvh, hd).
    const Value keys = b.Concatenate({b.SliceAxis(ctx_k, 0, l, 1), kb}, 1);  // (1, C + B, kvh, hd)
    const Value vals = b.Concatenate({b.SliceAxis(ctx_v, 0, l, 1), vb}, 1);
    h = b.Add(h, Dense(b, Attention(b, q, keys, vals, visible), lw.o));
    h = b.Add(h, SiluMlp(b, RmsNorm(b, h, lw.ln2, d.rms_norm_eps), lw.gate, lw.up, lw.down));
  }
  const Value hn = RmsNorm(b, h, final_norm, d.rms_norm_eps);  // (1, B, H)

  Program prog;
  std::vector<Value> results{ctx_k, ctx_v};
  prog.output_names = {"ctx_k", "ctx_v", "draft"};
  Value logits, proposals, probs;  // proposals: (1, B - 1)
  if (sh.sampling) {
    const int64_t v = t.vocab_size;
    logits = Dense(b, hn, lm_head);                                                         // (1, B, V)
    const Value q = SamplingProbs(b, b.Reshape(b.SliceAxis(logits, 1, 1, B - 1), {B - 1, v}), sample_params);
    proposals = b.Reshape(SampleRows(b, q, b.Reshape(b.SliceAxis(uniforms, 1, 1, B - 1), {B - 1})), {1, B - 1});
    probs = b.Reshape(b.Concatenate({b.Splat(0, {1, v}, DType::kF32), q}, 0), {1, B, v});
  } else if (sh.want_logits) {
    logits = Dense(b, hn, lm_head);  // (1, B, V)
    proposals = b.Argmax(b.SliceAxis(logits, 1, 1, B - 1), 2);
  } else {
    // Row 0 predicts the already-known `last`: skip its lm_head row.
    proposals = b.Argmax(Dense(b, b.SliceAxis(hn, 1, 1, B - 1), lm_head), 2);
  }
  results.push_back(b.Concatenate({last, proposals}, 1));  // draft: (1, B) = [last, proposals]
  if (sh.want_logits) {
    results.push_back(logits);
    prog.output_names.push_back("logits");
  }
  if (sh.sampling) {
    results.push_back(probs);
    prog.output_names.push_back("probs");
  }
  prog.num_params = b.num_params();
  prog.num_outputs = static_cast<int>(results.size());
  prog.mlir = b.Finish(results);
  return prog;
}

}  // namespace dflash::models
