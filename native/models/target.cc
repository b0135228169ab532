// Target score program (see target.h and docs/ARCHITECTURE.md). Numerics follow HF
// transformers' Qwen3/Llama modeling code: RMSNorm, q_norm/k_norm per head before RoPE (Qwen3),
// rotate_half RoPE, GQA, f32 softmax, SiLU MLP, final norm, lm_head; activations in the engine's
// dtype with f32 accumulation (numerics.h).
#include "models/target.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>

#include "hlo/builder.h"
#include "models/accept.h"
#include "models/gated_delta.h"
#include "models/layers.h"
#include "models/logprobs.h"
#include "models/moe.h"
#include "models/moe_gpt_oss.h"
#include "models/paged.h"
#include "models/paged_attention.h"
#include "models/rope.h"
#include "models/sampling.h"
#include "models/sliding_ring.h"
#include "models/token_mask.h"

namespace dflash::models {

using hlo::Builder;
using hlo::DType;
using hlo::Value;

namespace {

bool GptOss(const TargetConfig& c) { return c.family == "gpt_oss"; }
bool Qwen35(const TargetConfig& c) { return c.family == "qwen3_5"; }

// Qwen3.5's RMSNorm is zero-centred: x_hat * (1 + w), all in f32, then rounded.
Value ZeroCentredRmsNorm(Builder& b, const Value& x, const Value& w, float eps, const Numerics& n) {
  const int64_t d = x.dim(-1);
  const Value xf = b.Convert(x, DType::kF32);
  hlo::Shape keep = x.shape;
  keep.back() = 1;
  const Value ms = b.Div(b.Reduce(b.Mul(xf, xf), {-1}, hlo::ReduceKind::kSum), b.Scalar(static_cast<double>(d), DType::kF32));
  const Value inv = b.Rsqrt(b.Add(b.Reshape(ms, keep), b.Scalar(eps, DType::kF32)));
  return b.Convert(b.Mul(b.Mul(xf, inv), b.Add(b.Convert(w, DType::kF32), b.Scalar(1, DType::kF32))), n.act());
}

// RoPE on the first rotary_dim dims of each head (Qwen3.5: a quarter), the rest passed through.
Value PartialRope(Builder& b, const Value& x, const RopeTables& rope, int64_t rotary_dim) {
  const int64_t hd = x.dim(-1);
  const Value xf = b.Convert(x, DType::kF32);
  if (rotary_dim == 0 || rotary_dim == hd) return b.Convert(ApplyRope(b, xf, rope), x.dtype);
  const int64_t axis = x.rank() - 1;
  return b.Convert(b.Concatenate({ApplyRope(b, b.SliceAxis(xf, axis, 0, rotary_dim), rope), b.SliceAxis(xf, axis, rotary_dim, hd - rotary_dim)}, axis),
                   x.dtype);
}

GptOssMoeConfig OssMoeConfig(const TargetConfig& c) {
  // MXFP4 checkpoints keep the experts as Linear weights (E, out, in), narrow or expanded at load.
  return GptOssMoeConfig{c.moe.num_experts, c.moe.experts_per_token, c.moe.intermediate, c.swiglu_limit, c.swiglu_alpha,
                         c.quant.layout.payload == QuantLayout::Payload::kMxfp4};
}

void Validate(const TargetConfig& c) {
  if (c.family != "qwen3" && c.family != "qwen3_moe" && c.family != "qwen2" && c.family != "llama" && c.family != "gpt_oss" &&
      c.family != "qwen3_5")
    throw std::invalid_argument("target: family must be qwen3, qwen3_moe, qwen2, llama, gpt_oss or qwen3_5, got " + c.family);
  if (Qwen35(c) && (!c.qk_norm || c.qkv_bias || c.o_bias))
    throw std::invalid_argument("target: qwen3_5 has q/k norms and no attention biases");
  if (c.moe.shared_intermediate > 0 && !Qwen35(c)) throw std::invalid_argument("target: a shared expert needs a qwen3_5 target");
  if (!c.linear_layers.empty() && (!Qwen35(c) || static_cast<int64_t>(c.linear_layers.size()) != c.num_layers))
    throw std::invalid_argument("target: linear_layers needs a qwen3_5 target and one entry per layer (" + std::to_string(c.num_layers) + ")");
  if (c.hybrid() && (c.linear.key_heads <= 0 || c.linear.value_heads <= 0 || c.linear.key_dim <= 0 || c.linear.value_dim <= 0 ||
                     c.linear.conv_kernel < 2 || c.linear.value_heads % c.linear.key_heads != 0))
    throw std::invalid_argument("target: linear attention needs positive sizes, a kernel of at least 2 and value heads a multiple of key heads");
  if (c.rotary_dim < 0 || c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0)
    throw std::invalid_argument("target: rotary_dim must be even and at most head_dim, got " + std::to_string(c.rotary_dim));
  if (GptOss(c) && (c.qk_norm || !c.qkv_bias || !c.o_bias || !c.attention_sinks))
    throw std::invalid_argument("target: gpt_oss has attention biases and sinks and no q/k norms");
  if (!c.layer_windows.empty() && static_cast<int64_t>(c.layer_windows.size()) != c.num_layers)
    throw std::invalid_argument("target: layer_windows needs one entry per layer (" + std::to_string(c.num_layers) + "), got " +
                                std::to_string(c.layer_windows.size()));
  for (int64_t w : c.layer_windows)
    if (w < 0) throw std::invalid_argument("target: a sliding window must be positive (0 = full attention)");
  if (c.rope_yarn.enabled && c.rope_llama3.enabled) throw std::invalid_argument("target: rope scaling is yarn or llama3, not both");
  if ((c.family == "qwen3_moe" || GptOss(c) || (Qwen35(c) && c.moe.num_experts > 0)) && (c.moe.num_experts <= 0 || c.moe.experts_per_token <= 0 || c.moe.experts_per_token > c.moe.num_experts ||
                                  c.moe.intermediate <= 0 || static_cast<int64_t>(c.moe.sparse_layers.size()) != c.num_layers))
    throw std::invalid_argument("target: " + c.family + " needs experts, experts per token <= experts, an intermediate size and one sparse flag per layer");
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0)
    throw std::invalid_argument("target: config sizes must be positive");
  if (c.num_heads % c.num_kv_heads != 0) throw std::invalid_argument("target: num_heads must be a multiple of num_kv_heads");
  if (c.head_dim % 2 != 0) throw std::invalid_argument("target: head_dim must be even (RoPE)");
}

// Tokens of each row: row r's tokens 1..K-1 come from draft_pool[slot[r]] when slot[r] is not the
// pool's last ("none") row, everything else from the host's `tokens`. (R, K) s32.
Value PoolTokens(Builder& b, const Value& host, const Value& pool, const Value& slot) {
  const int64_t r = host.shape[0], k = host.shape[1], m = pool.shape[0];
  const Value from_pool = b.SliceAxis(b.Take(pool, slot), 1, 0, k);  // (R, K)
  const Value use = b.And(b.Compare(b.Reshape(slot, {r, 1}), b.Scalar(static_cast<double>(m - 1), DType::kS32), hlo::Cmp::kLT),
                          b.Compare(b.Iota({r, k}, DType::kS32, 1), b.Scalar(1, DType::kS32), hlo::Cmp::kGE));  // (R, K)
  return b.Select(use, from_pool, host);
}

}  // namespace

std::string ScoreShape::Key() const {
  std::string k = "score r" + std::to_string(rows) + " k" + std::to_string(tokens) + " p" + std::to_string(pages_per_row) +
                  " s" + std::to_string(page_size) + " n" + std::to_string(total_pages);
  if (want_logits) k += " logits";
  if (want_argmax) k += " argmax";
  if (want_accept) k += " accept";
  if (!hidden_layers.empty()) {
    k += " h";
    for (size_t i = 0; i < hidden_layers.size(); ++i) k += (i ? "," : "") + std::to_string(hidden_layers[i]);
  }
  if (sampling) k += " sample";
  if (pool_rows) k += " pool" + std::to_string(pool_rows) + "x" + std::to_string(pool_width);
  if (devices > 1) k += " tp" + std::to_string(devices);
  if (logprobs >= 0) k += " lp" + std::to_string(logprobs);
  if (grammar) k += " grammar";
  if (state_slots) k += " state" + std::to_string(state_slots);
  if (ring_pages) k += " ring" + std::to_string(ring_pages);
  return k;
}

std::vector<WeightSpec> TargetWeightSpecs(const TargetConfig& c, pjrt::DType t, int64_t devices) {
  Validate(c);
  const TensorParallel tp = TargetParallel(c, devices);
  const int64_t h = c.hidden_size;
  std::vector<WeightSpec> s;
  s.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, t, {}, tp.Vocab()});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const size_t first = s.size();
    AppendDecoderLayerSpecs(s, p, h, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size, c.qk_norm, t, tp,
                            AttentionBias{c.qkv_bias, c.o_bias});
    if (Qwen35(c) && c.is_linear(i)) {
      // A Gated DeltaNet layer: its token mixer replaces the attention projections and norms.
      std::vector<WeightSpec> mixer;
      AppendGatedDeltaSpecs(mixer, p + "linear_attn.", h, c.linear, t, tp);
      auto attn = [&](const WeightSpec& w) { return w.name.find(".self_attn.") != std::string::npos; };
      s.erase(std::remove_if(s.begin() + static_cast<std::ptrdiff_t>(first), s.end(), attn), s.end());
      s.insert(s.begin() + static_cast<std::ptrdiff_t>(first) + 1, mixer.begin(), mixer.end());
    } else if (Qwen35(c)) {
      // Gated attention: q_proj yields [q_h | gate_h] per head.
      for (size_t j = first; j < s.size(); ++j)
        if (s[j].name == p + "self_attn.q_proj.weight") s[j].shape[0] *= 2;
    }
    if (c.sparse(i)) {
      // The sparse MLP replaces the dense one: drop gate_up/down_proj, add router + experts.
      s.resize(s.size() - kDenseMlpSpecs);
      if (GptOss(c)) AppendGptOssMoeSpecs(s, p, h, OssMoeConfig(c), t, tp);
      else AppendMoeLayerSpecs(s, p, h, MoeConfig{c.moe.num_experts, c.moe.experts_per_token, c.moe.intermediate, c.moe.norm_topk_prob}, t, tp);
      if (c.moe.shared_intermediate > 0) {
        // Qwen3.5-MoE's shared expert: a SiLU MLP (gate and up fused as for a dense layer) and its gate.
        // Over a mesh split by its columns as a dense MLP is (gate and up stacked (2, Is, H)).
        const int64_t si = c.moe.shared_intermediate;
        const std::vector<std::string> gate_up = {p + "mlp.shared_expert.gate_proj.weight", p + "mlp.shared_expert.up_proj.weight"};
        if (tp.spmd()) s.push_back({p + "mlp.shared_expert.gate_up_proj.weight", {2, si, h}, t, gate_up, tp.Split(1)});
        else s.push_back({p + "mlp.shared_expert.gate_up_proj.weight", {2 * si, h}, t, gate_up});
        s.push_back({p + "mlp.shared_expert.down_proj.weight", {h, si}, t, {}, tp.Split(1)});
        s.push_back({p + "mlp.shared_expert_gate.weight", {1, h}, t});
      }
    }
    if (c.attention_sinks) s.push_back({p + "self_attn.sinks", {c.num_heads}, t, {}, tp.Split(0)});
  }
  s.push_back({"model.norm.weight", {h}, t});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {c.vocab_size, h}, t, {}, tp.Vocab()});
  ApplyQuant(s, c.quant);
  return s;
}

Program BuildTargetScore(const TargetConfig& c, const Numerics& nm, const ScoreShape& sh) {
  Validate(c);
  const int64_t r = sh.rows, k = sh.tokens, p = sh.pages_per_row, s = sh.page_size, n = sh.total_pages;
  if (r <= 0 || k <= 0 || p <= 0 || s <= 0 || n <= 0) throw std::invalid_argument("target score: shape sizes must be positive");
  for (int32_t id : sh.hidden_layers)
    if (id < 0 || id >= c.num_layers)
      throw std::invalid_argument("target score: hidden layer " + std::to_string(id) + " out of range [0, " + std::to_string(c.num_layers) + ")");
  if (sh.pool_rows && (sh.pool_rows < 2 || sh.pool_width < k))
    throw std::invalid_argument("target score: draft pool " + std::to_string(sh.pool_rows) + "x" + std::to_string(sh.pool_width) +
                                " cannot supply " + std::to_string(k) + " tokens per row");
  if (sh.sampling && sh.want_accept && k > 1 && !sh.pool_rows)
    throw std::invalid_argument("target score: speculative sampling needs the draft pool (the drafter's distributions)");
  const TensorParallel tp = TargetParallel(c, sh.devices);
  const int64_t L = c.num_layers, hd = c.head_dim, heads = c.num_heads, kvh = tp.kv_heads, V = c.vocab_size;

  Builder b(sh.devices);
  // ---- inputs ----
  const WeightInputs w = DeclareWeights(b, TargetWeightSpecs(c, nm.dtype, sh.devices));
  const Value embed = Weight(w, "model.embed_tokens.weight");
  std::vector<DecoderLayer> layers;
  std::vector<MoeWeights> experts(L);
  std::vector<GptOssMoeWeights> oss_experts(L);
  std::vector<Value> sinks(L);
  std::vector<GatedDeltaWeights> deltas(L);
  struct SharedExpert {
    Value gate_up, down, gate;  // (2Is, H), (H, Is), (1, H)
  };
  std::vector<SharedExpert> shared(L);
  const MoeConfig moe{c.moe.num_experts, c.moe.experts_per_token, c.moe.intermediate, c.moe.norm_topk_prob};
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    // A sparse layer's MLP is its MoE block: only the attention half is a decoder layer's.
    if (c.is_linear(l)) {
      deltas[l] = TakeGatedDelta(w, p + "linear_attn.");
      DecoderLayer lw;  // the norms and MLP of a decoder layer, no attention
      lw.ln1 = Weight(w, p + "input_layernorm.weight");
      lw.ln2 = Weight(w, p + "post_attention_layernorm.weight");
      if (!c.sparse(l)) {
        lw.gate_up = Weight(w, p + "mlp.gate_up_proj.weight");
        lw.down = Weight(w, p + "mlp.down_proj.weight");
      }
      layers.push_back(lw);
    } else {
      layers.push_back(TakeDecoderLayer(w, p, c.qk_norm, AttentionBias{c.qkv_bias, c.o_bias}, !c.sparse(l)));
    }
    if (c.attention_sinks) sinks[l] = Weight(w, p + "self_attn.sinks");
    if (!c.sparse(l)) continue;
    if (GptOss(c)) {
      oss_experts[l] = TakeGptOssMoe(w, p, c.quant.layout);
      continue;
    }
    if (c.moe.shared_intermediate > 0)
      shared[l] = SharedExpert{Weight(w, p + "mlp.shared_expert.gate_up_proj.weight"), Weight(w, p + "mlp.shared_expert.down_proj.weight"),
                               Weight(w, p + "mlp.shared_expert_gate.weight")};
    const std::string ex = p + "mlp.experts.*.";
    experts[l] = MoeWeights{Weight(w, p + "mlp.gate.weight"), Weight(w, ex + "gate_proj.weight"), Weight(w, ex + "up_proj.weight"),
                            Weight(w, ex + "down_proj.weight"), StoredStack(w, ex + "gate_proj.weight", c.quant.layout),
                            StoredStack(w, ex + "up_proj.weight", c.quant.layout), StoredStack(w, ex + "down_proj.weight", c.quant.layout)};
  }
  const Value final_norm = Weight(w, "model.norm.weight");
  const Value lm_head = c.tie_word_embeddings ? embed : Weight(w, "lm_head.weight");
  // Attention layers only (a hybrid target's recurrent layers have no KV): cache layer a is the
  // a-th attention layer.
  // With rings (sh.ring_pages), the sliding layers are the ring caches' layers instead.
  const int64_t Ls = sh.ring_pages > 0 ? c.num_sliding_layers() : 0, La = c.num_attention_layers() - Ls;
  if (sh.ring_pages > 0 && (Ls == 0 || La == 0 || sh.state_slots < 2))
    throw std::invalid_argument("target score: sliding-window rings need sliding and full attention layers and state slots");
  Value k_cache = b.Input("k_cache", KeyCacheDims(La, n, s, kvh, hd), nm.kv(), 0, tp.Cache());  // KV heads split
  Value v_cache = b.Input("v_cache", ValueCacheDims(La, n, s, kvh, hd), nm.kv(), 1, tp.Cache());
  const int64_t Ll = c.num_linear_layers();
  if (Ll > 0 && sh.state_slots < 2) throw std::invalid_argument("target score: a hybrid target needs state slots (the trash slot and one per sequence)");
  Value conv_state, ssm_state;
  if (Ll > 0) {
    conv_state = b.Input("conv_state", ConvStateDims(c.linear, Ll, sh.state_slots), nm.act(), 2, ConvStateSharding(tp));  // (Ll, M, kernel - 1, C)
    ssm_state = b.Input("ssm_state", SsmStateDims(c.linear, Ll, sh.state_slots), DType::kF32, 3, SsmStateSharding(tp));  // (Ll, M, Hv, dk, dv)
  }
  Value swa_k, swa_v;
  const int ring_alias = Ll > 0 ? 4 : 2;
  if (Ls > 0) {
    swa_k = b.Input("swa_k_cache", RingCacheDims(Ls, sh.state_slots, sh.ring_pages, s, kvh, hd), nm.kv(), ring_alias, tp.Cache());
    swa_v = b.Input("swa_v_cache", RingCacheDims(Ls, sh.state_slots, sh.ring_pages, s, kvh, hd), nm.kv(), ring_alias + 1, tp.Cache());
  }
  Value tokens = b.Input("tokens", {r, k}, DType::kS32);          // (R, K)
  const Value positions = b.Input("positions", {r, k}, DType::kS32);  // (R, K), -1 = padding
  const Value table = b.Input("block_table", {r, p}, DType::kS32);    // (R, P)
  Value pool_slot;
  if (sh.pool_rows) {
    const Value pool = b.Input("draft_pool", {sh.pool_rows, sh.pool_width}, DType::kS32);
    pool_slot = b.Input("pool_slot", {r}, DType::kS32);
    tokens = PoolTokens(b, tokens, pool, pool_slot);
  }
  Value next_tokens;  // prompt log-probabilities: the token after each slot
  if (sh.logprobs >= 0 && !sh.want_accept) next_tokens = b.Input("next_tokens", {r, k}, DType::kS32);
  Value sample_params, uniforms, probs_pool;
  if (sh.sampling) {
    sample_params = b.Input("sample_params", {r, 3}, DType::kF32);  // (temperature, top_p, top_k) per row
    uniforms = b.Input("uniforms", {r, 2 * k}, DType::kF32);  // [draw (K) | accept (K)]
    if (sh.want_accept && sh.pool_rows) probs_pool = b.Input("probs_pool", {sh.pool_rows, sh.pool_width, V}, DType::kF32);
  }
  Value state_slot;
  if (Ll > 0 || Ls > 0) state_slot = b.Input("state_slot", {r}, DType::kS32);  // (R): the row's slot, padding rows the trash slot
  Value token_mask;
  if (sh.grammar) token_mask = b.Input("token_mask", {r, k, MaskWords(V)}, DType::kS32);  // (R, K, W) packed bits

  // ---- cache addressing ----
  const Value valid = b.Compare(positions, b.Scalar(0, DType::kS32), hlo::Cmp::kGE);  // (R, K)
  const Value windex = PagedWriteIndex(b, positions, table, s);                        // (R, K, 2)
  const KeyRange causal = CausalRange(b, positions);                                   // slot j <= position
  // Sliding layers with rings: the rows' ring pages in place of their block table.
  const Value ring_table = Ls > 0 ? RingTable(b, state_slot, sh.ring_pages, p) : Value{};  // (R, P)
  const Value ring_windex = Ls > 0 ? PagedWriteIndex(b, positions, ring_table, s) : Value{};
  const int64_t rd = c.rotary_dim > 0 ? c.rotary_dim : hd;
  const RopeTables rope = c.rope_yarn.enabled
                              ? RopeCosSin(b, positions, RopeInvFreqYarn(hd, c.rope_theta, c.rope_yarn), c.rope_yarn.attention_factor)
                              : RopeCosSin(b, positions, RopeInvFreq(rd, c.rope_theta, c.rope_llama3));
  // Recurrent layers: a row whose first slot is position 0 starts from a zero state.
  const Value fresh = Ll > 0 ? b.Compare(b.Reshape(b.SliceAxis(positions, 1, 0, 1), {r}), b.Scalar(0, DType::kS32), hlo::Cmp::kEQ) : Value{};
  std::vector<DeltaPass> passes(L);
  auto norm = [&](const Value& x, const Value& wt) {
    return Qwen35(c) ? ZeroCentredRmsNorm(b, x, wt, c.rms_norm_eps, nm) : RmsNorm(b, x, wt, c.rms_norm_eps, nm);
  };

  // ---- layers ----
  Value h = b.Convert(b.Take(embed, tokens), nm.act());  // (R, K, H)
  std::map<int32_t, Value> after;                          // layer id -> output (R, K, H)
  int64_t linear_index = 0, attention_index = 0, sliding_index = 0;
  for (int64_t l = 0; l < L; ++l) {
    const DecoderLayer& lw = layers[l];
    const Value x = norm(h, lw.ln1);
    if (c.is_linear(l)) {
      // Gated DeltaNet: the state of this row's slot (its K/V pages of this layer stay unused).
      const DeltaState s0 = ReadDeltaState(b, conv_state, ssm_state, linear_index++, state_slot, fresh);
      // A prefill (no accept: it commits its valid tokens) may run whole chunks in the chunked form.
      passes[l] = GatedDeltaForward(b, x, deltas[l], c.linear, c.rms_norm_eps, s0, valid, nm, tp, sh.want_accept ? nullptr : &positions);
      h = b.Add(h, passes[l].out);
    } else {
    Value gate;  // Qwen3.5's gated attention: (R, K, heads * hd)
    Qkv qkv;
    if (Qwen35(c)) {
      // q_proj's rows are per head [q | gate]: as 2 * heads heads of hd, k/v as any target's.
      qkv = ProjectQkv(b, x, lw, 2 * heads, c.num_kv_heads, hd, tp, nm);
      const Value qg = b.Reshape(qkv.q, {r, k, heads, 2 * hd});
      qkv.q = b.SliceAxis(qg, 3, 0, hd);
      gate = b.Reshape(b.SliceAxis(qg, 3, hd, hd), {r, k, heads * hd});
    } else {
      qkv = ProjectQkv(b, x, lw, heads, c.num_kv_heads, hd, tp, nm);  // q (R, K, heads, hd), k/v (R, K, kvh, hd)
    }
    Value q = qkv.q, kk = qkv.k;
    const Value vv = qkv.v;
    if (c.qk_norm) {
      q = norm(q, lw.q_norm);
      kk = norm(kk, lw.k_norm);
    }
    q = PartialRope(b, q, rope, rd);
    kk = PartialRope(b, kk, rope, rd);
    // Write this step's K/V first; the attention then reads the row's pages chunk by chunk.
    // Sliding layers (gpt-oss) see the last window positions; sinks join the softmax.
    const KeyRange range = c.window(l) > 0 ? CausalRange(b, positions, c.window(l)) : causal;
    Value attn;
    if (Ls > 0 && c.window(l) > 0) {
      const int64_t a = sliding_index++;  // in the rows' rings
      swa_k = PagedWrite(b, swa_k, a, ring_windex, kk);
      swa_v = PagedWrite(b, swa_v, a, ring_windex, vv);
      attn = PagedAttention(b, q, swa_k, swa_v, a, ring_table, range, nm, std::nullopt, sinks[l]);  // (R, K, heads * hd)
    } else {
      const int64_t a = attention_index++;
      k_cache = PagedWrite(b, k_cache, a, windex, kk);
      v_cache = PagedWrite(b, v_cache, a, windex, vv);
      attn = PagedAttention(b, q, k_cache, v_cache, a, table, range, nm, std::nullopt, sinks[l]);  // (R, K, heads * hd)
    }
    if (gate.name.size()) attn = b.Mul(attn, b.Logistic(gate));
    h = b.Add(h, DenseBias(b, attn, lw.o, lw.o_bias, nm));
    }
    const Value x2 = norm(h, lw.ln2);  // (R, K, H)
    if (c.sparse(l) && GptOss(c))
      h = b.Add(h, b.Reshape(GptOssMoe(b, b.Reshape(x2, {r * k, c.hidden_size}), oss_experts[l], OssMoeConfig(c), MoeImpl::kAuto, nm),
                             {r, k, c.hidden_size}));
    else if (c.sparse(l)) {
      Value y = b.Reshape(MoeMlp(b, b.Reshape(x2, {r * k, c.hidden_size}), experts[l], moe, MoeImpl::kAuto, nm), {r, k, c.hidden_size});
      if (shared[l].gate.name.size()) {
        // + sigmoid(shared_expert_gate x) * shared_expert(x), as Qwen3_5MoeSparseMoeBlock adds it
        const Value g = b.Logistic(Dense(b, x2, shared[l].gate, nm));  // (R, K, 1)
        y = b.Add(y, b.Mul(g, SiluMlp(b, x2, shared[l].gate_up, shared[l].down, nm)));
      }
      h = b.Add(h, y);
    }
    else
      h = b.Add(h, SiluMlp(b, x2, lw.gate_up, lw.down, nm));
    if (std::count(sh.hidden_layers.begin(), sh.hidden_layers.end(), static_cast<int32_t>(l))) after[l] = h;
  }

  std::vector<NamedResult> results{{"k_cache", k_cache, tp.Cache()}, {"v_cache", v_cache, tp.Cache()}};
  const bool want_head = sh.want_logits || sh.want_argmax || sh.want_accept || sh.logprobs >= 0;
  const bool want_final = want_head || after.count(static_cast<int32_t>(L - 1));
  Value hn;
  if (want_final) hn = norm(h, final_norm);  // (R, K, H)
  // HF's hidden_states[L] (after the last layer) is the final-normed state, not the raw output.
  if (after.count(static_cast<int32_t>(L - 1))) after[static_cast<int32_t>(L - 1)] = hn;

  // ---- outputs ----
  Value accept_count;  // (R): tokens the verify commits per row (hybrid targets' state commit)
  if (want_head) {
    const Value logits = DenseF32(b, hn, lm_head, nm);  // (R, K, V) f32
    // Every verify takes token_mask; rows without a grammar send all ones, and a batch whose mask
    // is all ones (no constrained row) skips unpacking and masking at run time.
    Value argmax = sh.grammar ? Value{} : b.Argmax(logits, 2);  // (R, K)
    if (sh.grammar) {
      const Value refused = b.Compare(token_mask, b.Scalar(-1, DType::kS32), hlo::Cmp::kNE);  // (R, K, W)
      const Value constrained = b.Compare(b.Reduce(b.Convert(refused, DType::kS32), {0, 1, 2}, hlo::ReduceKind::kMax),
                                          b.Scalar(0, DType::kS32), hlo::Cmp::kGT);
      argmax = b.If(
          constrained, [&] { return std::vector<Value>{b.Argmax(MaskLogits(b, logits, AllowedTokens(b, token_mask, V)), 2)}; },
          [&] { return std::vector<Value>{b.Argmax(logits, 2)}; })[0];
    }
    Value accept = sh.want_accept ? GreedyAccept(b, tokens, valid, argmax) : Value{};        // (R, K + 1)
    Value picked = argmax;                                                                   // (R, K): next token per slot
    if (sh.sampling) {
      // Sampled rows draw; greedy rows (temperature 0) keep the argmax. A batch without a sampled
      // row skips the sampling math at run time (one program serves both).
      const Value temperature = b.SliceAxis(sample_params, 1, 0, 1);                           // (R, 1)
      const Value greedy_row = b.Compare(temperature, b.Scalar(0, DType::kF32), hlo::Cmp::kLE);  // (R, 1)
      const Value any_sampled = b.Compare(b.Reduce(temperature, {0, 1}, hlo::ReduceKind::kMax), b.Scalar(0, DType::kF32), hlo::Cmp::kGT);
      auto sampled = [&]() {
        const Value allowed_rows = sh.grammar ? b.Reshape(AllowedTokens(b, token_mask, V), {r * k, V}) : Value{};
        const Value probs = SamplingProbs(b, b.Reshape(logits, {r * k, V}), RepeatRows(b, sample_params, k), sh.grammar ? &allowed_rows : nullptr);
        const Value draws = b.Reshape(SampleRows(b, probs, b.Reshape(b.SliceAxis(uniforms, 1, 0, k), {r * k})), {r, k});
        std::vector<Value> out{b.Select(greedy_row, argmax, draws)};
        if (sh.want_accept) {
          // Draft distributions for pool-sourced drafts; rows without a pool block (plain sampled
          // decoding) have no valid drafts, so q is never read for them.
          Value q = b.Splat(0, {r, k, V}, DType::kF32), drafts = b.Splat(0, {r, k}, DType::kPred);
          if (probs_pool.name.size()) {
            q = b.SliceAxis(b.Take(probs_pool, pool_slot), 1, 0, k);  // (R, K, V)
            drafts = b.And(valid, b.Compare(b.Reshape(pool_slot, {r, 1}), b.Scalar(static_cast<double>(sh.pool_rows - 1), DType::kS32),
                                            hlo::Cmp::kLT));
          }
          const Value spec = SpeculativeAccept(b, tokens, drafts, b.Reshape(probs, {r, k, V}), q, b.SliceAxis(uniforms, 1, k, k),
                                               b.SliceAxis(uniforms, 1, 0, k));
          out.push_back(b.Select(greedy_row, accept, spec));
        }
        return out;
      };
      auto greedy = [&]() {
        std::vector<Value> out{argmax};
        if (sh.want_accept) out.push_back(accept);
        return out;
      };
      const std::vector<Value> chosen = b.If(any_sampled, sampled, greedy);
      picked = chosen[0];
      if (sh.want_accept) accept = chosen[1];
    }
    if (sh.want_argmax) results.push_back({"argmax", picked});
    if (sh.want_logits) results.push_back({"logits", logits});
    if (!sh.hidden_layers.empty()) {
      std::vector<Value> parts;
      for (int32_t id : sh.hidden_layers) parts.push_back(after.at(id));
      results.push_back({"hidden", b.Concatenate(parts, 2)});  // (R, K, n * H)
    }
    if (sh.want_accept) {
      accept_count = b.Reshape(b.SliceAxis(accept, 1, 0, 1), {r});
      // Log-probabilities of the committed tokens (slot j chose accept[1 + j]) ride along.
      if (sh.logprobs >= 0) accept = b.Concatenate({accept, PackedLogprobs(b, logits, b.SliceAxis(accept, 1, 1, k), sh.logprobs)}, 1);
      results.push_back({"accept", accept});
    } else if (sh.logprobs >= 0) {
      results.push_back({"prompt_logprobs", PackedLogprobs(b, logits, next_tokens, sh.logprobs)});
    }
  } else if (!sh.hidden_layers.empty()) {
    std::vector<Value> parts;
    for (int32_t id : sh.hidden_layers) parts.push_back(after.at(id));
    results.push_back({"hidden", b.Concatenate(parts, 2)});
  }
  if (Ll > 0) {
    // Recurrent layers commit now that the step's outcome is known: a verify its accepted tokens
    // (a second, masked pass over the saved per-token inputs), anything else its valid tokens.
    int64_t index = 0;
    for (int64_t l = 0; l < L; ++l) {
      if (!c.is_linear(l)) continue;
      const DeltaState s = accept_count.name.size() && k > 1 ? GatedDeltaCommit(b, passes[l], accept_count, c.linear)
                                                             : GatedDeltaCommitValid(b, passes[l], valid, c.linear);
      WriteDeltaState(b, conv_state, ssm_state, index++, state_slot, s);
    }
    results.insert(results.begin() + 2, {{"conv_state", conv_state, ConvStateSharding(tp)}, {"ssm_state", ssm_state, SsmStateSharding(tp)}});
  }
  if (Ls > 0) results.insert(results.begin() + ring_alias, {{"swa_k_cache", swa_k, tp.Cache()}, {"swa_v_cache", swa_v, tp.Cache()}});
  return FinishProgram(b, results);
}

}  // namespace dflash::models
