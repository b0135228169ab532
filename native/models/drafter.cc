// DFlash drafter programs (see drafter.h). Per draft layer, with h the block's hidden state and
// fused = hidden_norm(fc(feats)) the new context rows:
//   k = rope(k_norm(k_proj(.))), v = v_proj(.) of fused (no input_layernorm), written to the
//   layer's paged context cache at the rows' positions;
//   x = input_layernorm(h); q, k, v of the block from x (q, k with q_norm/k_norm and RoPE);
//   attention is non-causal over [context slots < block_start ; block rows < block_len], each
//   limited to the layer's sliding window when it has one; then residual + SiLU MLP.
// A DFlash2 drafter (models/drafter2.h) wraps both sub-layers of the block in its grouped dynamic
// causal convolutions and proposes with its candidate selector instead of the per-row argmax.
#include "models/drafter.h"

#include <stdexcept>
#include <string>

#include "hlo/builder.h"
#include "models/drafter2.h"
#include "models/layers.h"
#include "models/paged.h"
#include "models/paged_attention.h"
#include "models/rope.h"
#include "models/sampling.h"

namespace dflash::models {

using hlo::Builder;
using hlo::Cmp;
using hlo::DType;
using hlo::Value;

namespace {

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
  if (!d.sliding_windows.empty() && static_cast<int64_t>(d.sliding_windows.size()) != d.num_layers)
    throw std::invalid_argument("drafter: sliding_windows needs one entry per layer");
  if (!d.is_dflash2()) return;
  const DFlash2Config& c = d.dflash2;
  if (c.conv_group_size <= 0 || d.hidden_size % c.conv_group_size != 0)
    throw std::invalid_argument("drafter: DFlash2 conv_group_size must divide hidden_size");
  if (c.selector_rank <= 0 || c.selector_top_k <= 0 || c.selector_top_k > t.vocab_size)
    throw std::invalid_argument("drafter: DFlash2 selector_rank must be positive and selector_top_k in [1, vocab_size]");
  if (c.vocab_size != t.vocab_size)
    throw std::invalid_argument("drafter: DFlash2 codebooks of " + std::to_string(c.vocab_size) + " rows for a vocabulary of " +
                                std::to_string(t.vocab_size));
  if (!(c.output_multiplier > 0.0f)) throw std::invalid_argument("drafter: DFlash2 output_multiplier must be positive");
}

// |q - k| < window, elementwise over broadcastable s32 position tensors (window 0 = no limit).
Value InWindow(Builder& b, const Value& q, const Value& k, int64_t window) {
  const Value d = b.Abs(b.Sub(q, k));
  return b.Compare(d, b.Scalar(static_cast<double>(window), DType::kS32), Cmp::kLT);
}

}  // namespace

std::string DraftShape::Key() const {
  std::string k = "draft r" + std::to_string(rows) + " a" + std::to_string(append) + " b" + std::to_string(block) + " p" +
                  std::to_string(pages_per_row) + " s" + std::to_string(page_size) + " n" + std::to_string(total_pages);
  if (pool_rows) k += " pool" + std::to_string(pool_rows) + "x" + std::to_string(pool_width);
  if (want_logits) k += " logits";
  if (sampling) k += " sample";
  if (devices > 1) k += " tp" + std::to_string(devices) + (replicated ? " whole" : "");
  return k;
}

std::vector<WeightSpec> DrafterWeightSpecs(const DrafterConfig& d, pjrt::DType t, const TargetConfig& target, int64_t devices,
                                           bool replicated) {
  const TensorParallel tp = DrafterParallel(d, target, devices, replicated);
  const int64_t h = d.hidden_size;
  const int64_t n = static_cast<int64_t>(d.target_layer_ids.size());
  std::vector<WeightSpec> s;
  s.push_back({"fc.weight", {h, n * h}, t});
  s.push_back({"hidden_norm.weight", {h}, t});
  for (int64_t i = 0; i < d.num_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    AppendDecoderLayerSpecs(s, p, h, d.num_heads, d.num_kv_heads, d.head_dim, d.intermediate_size, /*qk_norm=*/true, t, tp,
                            AttentionBias{d.attention_bias, d.attention_bias});
    if (d.is_dflash2()) AppendDFlash2ConvSpecs(s, p, d, t);
  }
  s.push_back({"norm.weight", {h}, t});
  if (d.is_dflash2()) AppendDFlash2SelectorSpecs(s, d, t);
  ApplyQuant(s, d.quant);
  return s;
}

Program BuildDrafter(const DrafterConfig& d, const TargetConfig& t, const Numerics& nm, const DraftShape& sh) {
  Validate(d, t);
  const int64_t R = sh.rows, A = sh.append, B = sh.block, P = sh.pages_per_row, S = sh.page_size, N = sh.total_pages;
  if (R <= 0 || A <= 0 || B < 0 || B == 1 || P <= 0 || S <= 0 || N <= 0)
    throw std::invalid_argument("drafter: need rows, append, pages > 0 and block 0 (append only) or >= 2");
  if (sh.pool_rows && (sh.pool_rows < 2 || sh.pool_width < B)) throw std::invalid_argument("drafter: draft pool narrower than the block");
  if (B == 0 && (sh.want_logits || sh.sampling)) throw std::invalid_argument("drafter: logits and sampling need a block");
  const TensorParallel tp = DrafterParallel(d, t, sh.devices, sh.replicated);
  const int64_t H = d.hidden_size, hd = d.head_dim, heads = d.num_heads, kvh = tp.kv_heads, Ld = d.num_layers;
  const int64_t V = t.vocab_size;
  const int64_t nfeat = static_cast<int64_t>(d.target_layer_ids.size()) * H;

  Builder b(sh.devices);
  // ---- inputs ----
  auto specs = DrafterWeightSpecs(d, nm.dtype, t, sh.devices, sh.replicated);
  for (auto& s : specs) s.name = kDrafterPrefix + s.name;
  const WeightInputs w = DeclareWeights(b, specs);
  auto W = [&](const std::string& name) { return Weight(w, kDrafterPrefix + name); };
  // The target's embedding and lm_head, laid out as the target's programs take them.
  const Value embed = b.Input("model.embed_tokens.weight", {V, H}, nm.act(), std::nullopt, tp.Vocab());
  const Value lm_head = t.tie_word_embeddings ? embed : b.Input("lm_head.weight", {V, H}, nm.act(), std::nullopt, tp.Vocab());
  Value dk = b.Input("dk_cache", KeyCacheDims(Ld, N, S, kvh, hd), nm.kv(), 0, tp.Cache());  // KV heads split
  Value dv = b.Input("dv_cache", ValueCacheDims(Ld, N, S, kvh, hd), nm.kv(), 1, tp.Cache());
  const Value feats = b.Input("feats", {R, A, nfeat}, nm.act());
  const Value positions = b.Input("positions", {R, A}, DType::kS32);
  const Value table = b.Input("block_table", {R, P}, DType::kS32);
  Value last, block_start, block_len, pool, slot, params, uniforms, probs_pool;
  int next_alias = 2;
  if (B) {
    last = b.Input("last", {R}, DType::kS32);
    block_start = b.Input("block_start", {R}, DType::kS32);
    block_len = b.Input("block_len", {R}, DType::kS32);
    if (sh.pool_rows) {
      pool = b.Input("draft_pool", {sh.pool_rows, sh.pool_width}, DType::kS32, next_alias++);
      slot = b.Input("pool_slot", {R}, DType::kS32);
    }
    if (sh.sampling) {
      params = b.Input("sample_params", {R, 3}, DType::kF32);
      uniforms = b.Input("uniforms", {R, B}, DType::kF32);
      if (sh.pool_rows) probs_pool = b.Input("probs_pool", {sh.pool_rows, sh.pool_width, V}, DType::kF32, next_alias++);
    }
  }

  // ---- context: fused = hidden_norm(fc(feats)), no input_layernorm ----
  const Value fused = RmsNorm(b, Dense(b, feats, W("fc.weight"), nm), W("hidden_norm.weight"), d.rms_norm_eps, nm);  // (R, A, H)
  const Value cindex = PagedWriteIndex(b, positions, table, S);
  const std::vector<float> inv = RopeInvFreq(hd, d.rope_theta, d.rope_llama3);
  const RopeTables ctx_rope = RopeCosSin(b, positions, inv);
  auto rope = [&](const Value& x, const RopeTables& tab) { return b.Convert(ApplyRope(b, b.Convert(x, DType::kF32), tab), nm.act()); };

  // ---- block: embed[[last, mask x (B-1)]] * input_embedding_scale at block_start + i ----
  Value h, blk_pos;
  RopeTables blk_rope;
  std::vector<KeyRange> ctx_range;   // per layer: the context slots each block query sees
  std::vector<Value> blk_visible;    // per layer (R, B, B)
  if (B) {
    const Value col = b.Iota({R, B}, DType::kS32, 1);
    blk_pos = b.Add(col, b.Reshape(block_start, {R, 1}));  // (R, B)
    const Value ids = b.Select(b.Compare(col, b.Scalar(0, DType::kS32), Cmp::kEQ), b.Reshape(last, {R, 1}),
                               b.Scalar(static_cast<double>(d.mask_token_id), DType::kS32));
    h = b.Convert(b.Take(embed, ids), nm.act());  // (R, B, H)
    if (d.input_embedding_scale != 1.0f) h = b.Mul(h, b.Scalar(d.input_embedding_scale, nm.act()));
    blk_rope = RopeCosSin(b, blk_pos, inv);
    // Context slot j holds position j: visible to the block iff j < block_start (committed),
    // and, in a sliding-window layer, |q - j| < window: j > q - window.
    const Value qpos = b.Reshape(blk_pos, {R, B, 1});
    const Value ctx_hi = b.BroadcastTo(b.Sub(b.Reshape(block_start, {R, 1}), b.Scalar(1, DType::kS32)), {R, B});  // (R, B)
    const Value blk_key = b.Iota({R, B, B}, DType::kS32, 2);
    const Value blk_vis = b.Compare(blk_key, b.Reshape(block_len, {R, 1, 1}), Cmp::kLT);
    const Value blk_key_pos = b.Add(blk_key, b.Reshape(block_start, {R, 1, 1}));
    for (int64_t l = 0; l < Ld; ++l) {
      const int64_t win = d.sliding_windows.empty() ? 0 : d.sliding_windows[l];
      if (win <= 0) {
        ctx_range.push_back({b.Splat(0, {R, B}, DType::kS32), ctx_hi});
        blk_visible.push_back(blk_vis);
      } else {
        ctx_range.push_back({b.Add(blk_pos, b.Scalar(static_cast<double>(1 - win), DType::kS32)), ctx_hi});
        blk_visible.push_back(b.And(blk_vis, InWindow(b, qpos, blk_key_pos, win)));
      }
    }
  }

  // The context rows of every layer, written by one scatter per cache before any layer reads:
  // a write per layer would not depend on the previous layer's reads (the context rows come
  // from `fused` alone), and XLA:CPU then copied the whole cache before each write.
  const AttentionBias bias{d.attention_bias, d.attention_bias};  // q/k/v and o (Qwen3Attention with attention_bias)
  std::vector<Value> ctx_keys, ctx_values;  // per layer (R, A, kvh, hd)
  for (int64_t l = 0; l < Ld; ++l) {
    const DecoderLayer lw = TakeDecoderLayer(w, kDrafterPrefix + std::string("layers.") + std::to_string(l) + ".", true, bias);
    const Qkv kv = ProjectQkv(b, fused, lw, heads, d.num_kv_heads, hd, tp, nm);  // (its q is unused: XLA drops it)
    ctx_keys.push_back(rope(RmsNorm(b, kv.k, lw.k_norm, d.rms_norm_eps, nm), ctx_rope));
    ctx_values.push_back(kv.v);
  }
  dk = PagedWriteLayers(b, dk, cindex, ctx_keys);
  dv = PagedWriteLayers(b, dv, cindex, ctx_values);

  for (int64_t l = 0; l < Ld && B; ++l) {
    const std::string lp = kDrafterPrefix + std::string("layers.") + std::to_string(l) + ".";
    const DecoderLayer lw = TakeDecoderLayer(w, lp, true, bias);
    Value x = RmsNorm(b, h, lw.ln1, d.rms_norm_eps, nm);  // (R, B, H)
    // DFlash2: conv side 0 on the sub-layer's input, side 1 on its output, both with the
    // coefficients of its normed input (z-lab GroupedDynamicCausalConv.prepare / finish).
    GroupedConv conv;
    Value coeffs;
    if (d.is_dflash2()) {
      conv = TakeGroupedConv(w, lp + "attention_conv.", d);
      coeffs = ConvCoefficients(b, x, conv, nm);
      x = GroupedCausalConv(b, x, conv.base, coeffs, 0, conv.group, nm);
    }
    const Qkv qkv = ProjectQkv(b, x, lw, heads, d.num_kv_heads, hd, tp, nm);
    const Value q = rope(RmsNorm(b, qkv.q, lw.q_norm, d.rms_norm_eps, nm), blk_rope);
    const Value kb = rope(RmsNorm(b, qkv.k, lw.k_norm, d.rms_norm_eps, nm), blk_rope);
    const Value vb = qkv.v;  // (R, B, kvh, hd)
    // Keys in two segments: the context pages, chunk by chunk, then the block (R, B, kvh, hd),
    // scored on its own (its scores then do not depend on the context's length).
    Value attn = DenseBias(b, PagedAttention(b, q, dk, dv, l, table, ctx_range[l], nm, ExtraKeys{kb, vb, blk_visible[l]}), lw.o, lw.o_bias, nm);
    if (d.is_dflash2()) attn = GroupedCausalConv(b, attn, conv.base, coeffs, 1, conv.group, nm);
    h = b.Add(h, attn);
    x = RmsNorm(b, h, lw.ln2, d.rms_norm_eps, nm);
    if (d.is_dflash2()) {
      conv = TakeGroupedConv(w, lp + "mlp_conv.", d);
      coeffs = ConvCoefficients(b, x, conv, nm);
      x = GroupedCausalConv(b, x, conv.base, coeffs, 0, conv.group, nm);
    }
    Value mlp = SiluMlp(b, x, lw.gate_up, lw.down, nm);
    if (d.is_dflash2()) mlp = GroupedCausalConv(b, mlp, conv.base, coeffs, 1, conv.group, nm);
    h = b.Add(h, mlp);
  }

  std::vector<NamedResult> results{{"dk_cache", dk, tp.Cache()}, {"dv_cache", dv, tp.Cache()}};
  if (!B) return FinishProgram(b, results);

  const Value hn = RmsNorm(b, h, W("norm.weight"), d.rms_norm_eps, nm);  // (R, B, H)
  Value logits, proposals, probs;  // proposals: (R, B - 1)
  if (d.is_dflash2()) {
    const DraftHead head = DFlash2Head(b, w, kDrafterPrefix, d, hn, lm_head, last, sh.sampling ? &params : nullptr,
                                       sh.sampling ? &uniforms : nullptr, sh.want_logits, nm);
    logits = head.logits, proposals = head.proposals, probs = head.probs;
  } else if (sh.want_logits || sh.sampling) {
    logits = DenseF32(b, hn, lm_head, nm);  // (R, B, V)
    proposals = b.Argmax(b.SliceAxis(logits, 1, 1, B - 1), 2);
  } else {
    // Row 0 predicts the already-known `last`: skip its lm_head row.
    proposals = b.Argmax(DenseF32(b, b.SliceAxis(hn, 1, 1, B - 1), lm_head, nm), 2);
  }
  // pool[slot[r], 0 .. B-1] = row r's block; padding rows all write the pool's last ("none") row.
  const Value idx = sh.pool_rows ? b.Reshape(slot, {R, 1}) : Value{};
  auto write_probs = [&](const Value& p) { return b.Scatter(probs_pool, idx, p, hlo::ScatterDims{{1, 2}, {0}, {0}, 1}); };
  Value new_probs_pool;
  if (sh.sampling && !d.is_dflash2()) {
    // Sampled rows draw their proposals; a batch without one skips the sampling math (and keeps
    // the probs pool, which only sampled rows read) at run time: one program serves both.
    const Value temperature = b.SliceAxis(params, 1, 0, 1);                                   // (R, 1)
    const Value any_sampled = b.Compare(b.Reduce(temperature, {0, 1}, hlo::ReduceKind::kMax), b.Scalar(0, DType::kF32), Cmp::kGT);
    const Value greedy_proposals = proposals;
    const std::vector<Value> chosen = b.If(
        any_sampled,
        [&]() {
          const Value rows = b.Reshape(b.SliceAxis(logits, 1, 1, B - 1), {R * (B - 1), V});
          const Value q = SamplingProbs(b, rows, RepeatRows(b, params, B - 1));  // (R * (B - 1), V)
          const Value draws = b.Reshape(SampleRows(b, q, b.Reshape(b.SliceAxis(uniforms, 1, 1, B - 1), {R * (B - 1)})), {R, B - 1});
          const Value greedy = b.Compare(temperature, b.Scalar(0, DType::kF32), Cmp::kLE);  // (R, 1)
          std::vector<Value> out{b.Select(greedy, greedy_proposals, draws)};
          // (R, B, V); row 0 unused
          if (sh.pool_rows) out.push_back(write_probs(b.Concatenate({b.Splat(0, {R, 1, V}, DType::kF32), b.Reshape(q, {R, B - 1, V})}, 1)));
          return out;
        },
        [&]() {
          std::vector<Value> out{greedy_proposals};
          if (sh.pool_rows) out.push_back(probs_pool);
          return out;
        });
    proposals = chosen[0];
    if (sh.pool_rows) new_probs_pool = chosen[1];
  } else if (sh.sampling && sh.pool_rows) {
    new_probs_pool = write_probs(probs);  // DFlash2: the candidate distributions
  }
  const Value draft = b.Concatenate({b.Reshape(last, {R, 1}), proposals}, 1);  // (R, B) = [last, proposals]
  if (sh.pool_rows) {
    results.push_back({"draft_pool", b.Scatter(pool, idx, draft, hlo::ScatterDims{{1}, {0}, {0}, 1})});
    if (sh.sampling) results.push_back({"probs_pool", new_probs_pool});
  } else {
    results.push_back({"draft", draft});
  }
  if (sh.want_logits) results.push_back({"logits", logits});
  return FinishProgram(b, results);
}

}  // namespace dflash::models
