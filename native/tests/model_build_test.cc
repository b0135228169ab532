// Build-time checks of the model graphs: weight spec names/order/shapes per the contract in
// docs/ARCHITECTURE.md, program parameter/output bookkeeping, and config/shape errors. Running
// the programs on the CPU plugin is covered by model_run_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>

#include "models/drafter.h"
#include "models/rope.h"
#include "models/parallel.h"
#include "models/target.h"

namespace dflash::models {
namespace {

TargetConfig TinyTarget(const std::string& family) {
  TargetConfig c;
  c.family = family;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.qk_norm = family == "qwen3";
  c.tie_word_embeddings = family == "llama";
  return c;
}

DrafterConfig TinyDrafter() {
  DrafterConfig d;
  d.num_layers = 2;
  d.hidden_size = 32;
  d.intermediate_size = 40;
  d.num_heads = 4;
  d.num_kv_heads = 2;
  d.head_dim = 8;
  d.block_size = 4;
  d.mask_token_id = 63;
  d.target_layer_ids = {0, 2};
  return d;
}

const Numerics kF32{};

int IndexOf(const std::vector<IoSpec>& v, const std::string& name) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].name == name) return static_cast<int>(i);
  return -1;
}

std::vector<std::string> Names(const std::vector<IoSpec>& v) {
  std::vector<std::string> out;
  for (const auto& x : v) out.push_back(x.name);
  return out;
}

TEST(ModelBuild, TargetWeightSpecsQwen3) {
  const auto specs = TargetWeightSpecs(TinyTarget("qwen3"), pjrt::DType::kBF16);
  ASSERT_EQ(specs.size(), 1u + 3 * 10 + 1 + 1);
  EXPECT_EQ(specs[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(specs[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(specs[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{32, 32}));  // k_proj: kvh * hd = 32
  EXPECT_EQ(specs[6].name, "model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(specs[7].name, "model.layers.0.self_attn.k_norm.weight");
  EXPECT_EQ(specs[8].name, "model.layers.0.post_attention_layernorm.weight");
  // gate and up: one program input, made at load of the two checkpoint tensors.
  EXPECT_EQ(specs[9].name, "model.layers.0.mlp.gate_up_proj.weight");
  EXPECT_EQ(specs[9].shape, (std::vector<int64_t>{96, 32}));  // over a mesh: (2, 48, 32), split by I
  EXPECT_EQ(specs[9].parts, (std::vector<std::string>{"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"}));
  EXPECT_EQ(specs[10].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(specs[10].shape, (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(specs[specs.size() - 2].name, "model.norm.weight");
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  for (const auto& s : specs) EXPECT_EQ(s.dtype, pjrt::DType::kBF16);
}

TEST(ModelBuild, TargetWeightSpecsLlamaTied) {
  const auto specs = TargetWeightSpecs(TinyTarget("llama"), pjrt::DType::kF32);
  ASSERT_EQ(specs.size(), 1u + 3 * 8 + 1);
  EXPECT_EQ(specs.back().name, "model.norm.weight");
  for (const auto& s : specs) EXPECT_EQ(s.name.find("_norm.weight") != std::string::npos && s.name.find("self_attn") != std::string::npos, false);
}

TEST(ModelBuild, TargetScoreSignatureIsNamed) {
  const TargetConfig c = TinyTarget("qwen3");
  ScoreShape s;
  s.rows = 2;
  s.tokens = 4;
  s.pages_per_row = 2;
  s.page_size = 4;
  s.total_pages = 8;
  s.hidden_layers = {0, 2};
  s.want_accept = true;
  s.pool_rows = 3;
  s.pool_width = 4;
  const Program p = BuildTargetScore(c, kF32, s);
  const auto specs = TargetWeightSpecs(c, pjrt::DType::kF32);
  ASSERT_EQ(p.inputs.size(), specs.size() + 7);
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(p.inputs[i].name, specs[i].name);
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "k_cache")].shape, (std::vector<int64_t>{3, 8, 4, 2, 16}));
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "block_table")].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "draft_pool")].shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(Names(p.outputs), (std::vector<std::string>{"k_cache", "v_cache", "hidden", "accept"}));
  EXPECT_EQ(p.outputs[3].shape, (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(p.outputs[2].shape, (std::vector<int64_t>{2, 4, 64}));
  // The caches are donated into the outputs of the same name.
  EXPECT_NE(p.mlir.find("tensor<3x8x4x2x16xf32> {tf.aliasing_output = 0 : i32}"), std::string::npos);
  EXPECT_NE(p.mlir.find("tensor<3x8x4x2x16xf32> {tf.aliasing_output = 1 : i32}"), std::string::npos);

  ScoreShape prefill = s;
  prefill.want_accept = false;
  prefill.pool_rows = 0;
  const Program pre = BuildTargetScore(c, kF32, prefill);
  EXPECT_EQ(Names(pre.outputs), (std::vector<std::string>{"k_cache", "v_cache", "hidden"}));
  EXPECT_EQ(pre.mlir.find("lm_head"), std::string::npos);  // no head without outputs that need it
  EXPECT_EQ(IndexOf(pre.inputs, "draft_pool"), -1);
}

TEST(ModelBuild, ShapeKeysCoverEveryField) {
  ScoreShape a;
  std::set<std::string> keys{a.Key()};
  auto add = [&](const ScoreShape& s) { EXPECT_TRUE(keys.insert(s.Key()).second) << s.Key(); };
  ScoreShape b = a; b.rows = 2; add(b);
  b = a; b.tokens = 2; add(b);
  b = a; b.pages_per_row = 2; add(b);
  b = a; b.page_size = 8; add(b);
  b = a; b.total_pages = 9; add(b);
  b = a; b.want_logits = true; add(b);
  b = a; b.want_argmax = true; add(b);
  b = a; b.want_accept = true; add(b);
  b = a; b.hidden_layers = {1}; add(b);
  b = a; b.sampling = true; add(b);
  b = a; b.pool_rows = 3; b.pool_width = 4; add(b);
  DraftShape d;
  std::set<std::string> dk{d.Key()};
  auto addd = [&](const DraftShape& s) { EXPECT_TRUE(dk.insert(s.Key()).second) << s.Key(); };
  DraftShape e = d; e.rows = 2; addd(e);
  e = d; e.append = 2; addd(e);
  e = d; e.block = 4; addd(e);
  e = d; e.pages_per_row = 2; addd(e);
  e = d; e.page_size = 8; addd(e);
  e = d; e.total_pages = 9; addd(e);
  e = d; e.pool_rows = 3; e.pool_width = 4; addd(e);
  e = d; e.block = 4; e.want_logits = true; addd(e);
  e = d; e.block = 4; e.sampling = true; addd(e);
}

TEST(ModelBuild, Bf16NumericsKeepWeightsAndCacheIn16Bit) {
  const TargetConfig c = TinyTarget("qwen3");
  Numerics n;
  n.dtype = pjrt::DType::kBF16;
  n.kv_dtype = pjrt::DType::kBF16;
  n.min_dot_rows = 3;
  ScoreShape s;
  s.want_accept = true;
  const Program p = BuildTargetScore(c, n, s);
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "model.layers.0.self_attn.q_proj.weight")].dtype, pjrt::DType::kBF16);
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "k_cache")].dtype, pjrt::DType::kBF16);
  // No weight is widened in the graph: every dot takes bf16 operands and accumulates in f32.
  EXPECT_EQ(p.mlir.find("(tensor<64x32xbf16>) -> tensor<64x32xf32>"), std::string::npos);
  EXPECT_NE(p.mlir.find("tensor<3x32xbf16>, tensor<64x32xbf16>) -> tensor<3x64xf32>"), std::string::npos);  // padded single-row dot
}

TEST(ModelBuild, TargetScoreErrors) {
  TargetConfig c = TinyTarget("qwen3");
  ScoreShape s;
  s.hidden_layers = {3};
  EXPECT_THROW(BuildTargetScore(c, kF32, s), std::invalid_argument);
  s.hidden_layers = {};
  s.tokens = 0;
  EXPECT_THROW(BuildTargetScore(c, kF32, s), std::invalid_argument);
  s.tokens = 4;
  s.pool_rows = 3;
  s.pool_width = 2;  // narrower than the 4 tokens it must supply
  EXPECT_THROW(BuildTargetScore(c, kF32, s), std::invalid_argument);
  c.num_kv_heads = 3;
  EXPECT_THROW(TargetWeightSpecs(c, pjrt::DType::kF32), std::invalid_argument);
  c = TinyTarget("mistral");
  EXPECT_THROW(TargetWeightSpecs(c, pjrt::DType::kF32), std::invalid_argument);
}

TEST(ModelBuild, TensorParallelLayoutsAndTheirRefusals) {
  // 4 heads, 2 KV heads, I 48, V 64 over 2 devices: Megatron splits, KV heads split.
  const TargetConfig c = TinyTarget("qwen3");
  const auto specs = TargetWeightSpecs(c, pjrt::DType::kF32, 2);
  auto split = [&](const std::string& name) {
    for (const auto& s : specs)
      if (s.name == name) return s.sharding.dim;
    ADD_FAILURE() << "no spec " << name;
    return -2;
  };
  EXPECT_EQ(split("model.embed_tokens.weight"), 0);
  EXPECT_EQ(split("model.layers.0.self_attn.q_proj.weight"), 0);
  EXPECT_EQ(split("model.layers.0.self_attn.k_proj.weight"), 0);
  EXPECT_EQ(split("model.layers.0.self_attn.o_proj.weight"), 1);
  EXPECT_EQ(split("model.layers.0.self_attn.q_norm.weight"), -1);
  EXPECT_EQ(split("model.layers.0.mlp.gate_up_proj.weight"), 1);
  EXPECT_EQ(split("model.layers.0.mlp.down_proj.weight"), 1);
  EXPECT_EQ(split("model.norm.weight"), -1);
  EXPECT_EQ(split("lm_head.weight"), 0);
  // One device: nothing split, the same specs as before.
  for (const auto& s : TargetWeightSpecs(c, pjrt::DType::kF32, 1)) EXPECT_TRUE(s.sharding.replicated()) << s.name;
  // 4 devices, 2 KV heads: each KV head repeated twice, k/v_proj replicated, caches of 4 heads.
  const TensorParallel four = TargetParallel(c, 4);
  EXPECT_EQ(four.kv_heads, 4);
  EXPECT_EQ(four.kv_repeat, 2);
  EXPECT_TRUE(four.KvProj().replicated());
  // A vocabulary the devices do not divide stays whole.
  TargetConfig odd = c;
  odd.vocab_size = 66;
  EXPECT_FALSE(TargetParallel(odd, 4).split_vocab);
  auto refusal = [&](const TargetConfig& t, int64_t n) {
    try {
      TargetParallel(t, n);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(refusal(c, 3), "tensorParallel 3 does not divide the target's 4 attention heads (num_attention_heads)");
  TargetConfig wide = c;
  wide.num_heads = 12, wide.num_kv_heads = 3;
  EXPECT_EQ(refusal(wide, 2), "tensorParallel 2 neither divides nor is a multiple of the target's 3 key/value heads (num_key_value_heads)");
  TargetConfig mlp = c;
  mlp.intermediate_size = 50;
  EXPECT_EQ(refusal(mlp, 4), "tensorParallel 4 does not divide the target's 50 MLP columns (intermediate_size)");
  // The score program carries the shardings in its signature and text.
  ScoreShape sh{1, 4, 4, 4, 9, false, true, false, {}};
  sh.devices = 2;
  const Program p = BuildTargetScore(c, kF32, sh);
  EXPECT_EQ(p.partitions, 2);
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "k_cache")].sharding.dim, 3);
  EXPECT_EQ(p.outputs[IndexOf(p.outputs, "argmax")].sharding.dim, -1);
  EXPECT_NE(p.mlir.find("sdy.mesh @mesh = <[\"tp\"=2]>"), std::string::npos);
  EXPECT_NE(sh.Key().find(" tp2"), std::string::npos);
}

TEST(ModelBuild, DrafterSpecsAndSignature) {
  const DrafterConfig d = TinyDrafter();
  const auto specs = DrafterWeightSpecs(d, pjrt::DType::kF32, TinyTarget("qwen3"));
  ASSERT_EQ(specs.size(), 2u + 2 * 10 + 1);
  EXPECT_EQ(specs[0].name, "fc.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(specs[1].name, "hidden_norm.weight");
  EXPECT_EQ(specs[2].name, "layers.0.input_layernorm.weight");
  EXPECT_EQ(specs[7].name, "layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(specs[7].shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(specs.back().name, "norm.weight");

  DraftShape s;
  s.rows = 2;
  s.append = 4;
  s.block = 4;
  s.pages_per_row = 2;
  s.page_size = 4;
  s.total_pages = 8;
  s.pool_rows = 3;
  s.pool_width = 4;
  const Program p = BuildDrafter(d, TinyTarget("qwen3"), kF32, s);
  EXPECT_EQ(p.inputs[0].name, "drafter.fc.weight");
  EXPECT_GE(IndexOf(p.inputs, "model.embed_tokens.weight"), 0);
  EXPECT_EQ(IndexOf(p.inputs, "lm_head.weight"), IndexOf(p.inputs, "lm_head.weight"));
  EXPECT_EQ(p.inputs[IndexOf(p.inputs, "dk_cache")].shape, (std::vector<int64_t>{2, 8, 4, 2, 8}));
  EXPECT_EQ(Names(p.outputs), (std::vector<std::string>{"dk_cache", "dv_cache", "draft_pool"}));
  s.pool_rows = 0;
  s.want_logits = true;
  EXPECT_EQ(Names(BuildDrafter(d, TinyTarget("qwen3"), kF32, s).outputs),
            (std::vector<std::string>{"dk_cache", "dv_cache", "draft", "logits"}));
  s.block = 0;
  s.want_logits = false;
  EXPECT_EQ(Names(BuildDrafter(d, TinyTarget("qwen3"), kF32, s).outputs), (std::vector<std::string>{"dk_cache", "dv_cache"}));
}

TEST(ModelBuild, DrafterErrors) {
  DrafterConfig d = TinyDrafter();
  DraftShape s;
  s.block = 1;  // a block of one token drafts nothing
  EXPECT_THROW(BuildDrafter(d, TinyTarget("qwen3"), kF32, s), std::invalid_argument);
  s.block = 4;
  s.pool_rows = 3;
  s.pool_width = 2;
  EXPECT_THROW(BuildDrafter(d, TinyTarget("qwen3"), kF32, s), std::invalid_argument);  // pool narrower than the block
  s.pool_rows = 0;
  d.hidden_size = 16;
  EXPECT_THROW(BuildDrafter(d, TinyTarget("qwen3"), kF32, s), std::invalid_argument);  // H differs
  d = TinyDrafter();
  d.sliding_windows = {8};  // one entry for two layers
  EXPECT_THROW(BuildDrafter(d, TinyTarget("qwen3"), kF32, s), std::invalid_argument);
}

TEST(ModelBuild, RopeInvFreq) {
  const auto inv = RopeInvFreq(8, 10000.0);
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[1], 0.1f);
  EXPECT_FLOAT_EQ(inv[2], 0.01f);
  // llama3 rule: with old context 32 (wavelens 2*pi*1, 2*pi*10, ...): low-frequency entries are
  // divided by the factor, high-frequency ones kept.
  RopeLlama3 l3;
  l3.enabled = true;
  l3.factor = 8;
  l3.original_max_position_embeddings = 32;
  const auto s = RopeInvFreq(8, 10000.0, l3);
  EXPECT_FLOAT_EQ(s[0], 1.0f);          // wavelen 6.3 < 8 (high-frequency)
  EXPECT_FLOAT_EQ(s[3], 0.001f / 8);    // wavelen 6283 > 32 (low-frequency)
  EXPECT_FLOAT_EQ(s[1], 0.1f / 8);      // wavelen 62.8 > 32 -> low as well
  // Medium band (high wavelen 32 <= 62.8 <= low wavelen 128): smooth interpolation.
  l3.original_max_position_embeddings = 128;
  const double smooth = (128 / (2 * M_PI / 0.1) - 1) / 3;
  EXPECT_NEAR(RopeInvFreq(8, 10000.0, l3)[1], (1 - smooth) * 0.1 / 8 + smooth * 0.1, 1e-6);
}

}  // namespace
}  // namespace dflash::models
