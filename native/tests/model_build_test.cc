// Build-time checks of the model graphs: weight spec names/order/shapes per the contract in
// docs/ARCHITECTURE.md, program parameter/output bookkeeping, and config/shape errors. Running
// the programs on the CPU plugin is covered by model_run_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "models/drafter.h"
#include "models/rope.h"
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
  c.weight_dtype = pjrt::DType::kBF16;
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
  d.weight_dtype = pjrt::DType::kF32;
  return d;
}

TEST(ModelBuild, TargetWeightSpecsQwen3) {
  const auto specs = TargetWeightSpecs(TinyTarget("qwen3"));
  ASSERT_EQ(specs.size(), 1u + 3 * 11 + 1 + 1);
  EXPECT_EQ(specs[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(specs[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(specs[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{32, 32}));  // k_proj: kvh * hd = 32
  EXPECT_EQ(specs[6].name, "model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(specs[7].name, "model.layers.0.self_attn.k_norm.weight");
  EXPECT_EQ(specs[8].name, "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(specs[11].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(specs[11].shape, (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(specs[specs.size() - 2].name, "model.norm.weight");
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  for (const auto& s : specs) EXPECT_EQ(s.dtype, pjrt::DType::kBF16);
}

TEST(ModelBuild, TargetWeightSpecsLlamaTied) {
  const auto specs = TargetWeightSpecs(TinyTarget("llama"));
  ASSERT_EQ(specs.size(), 1u + 3 * 9 + 1);
  EXPECT_EQ(specs.back().name, "model.norm.weight");
  for (const auto& s : specs) EXPECT_EQ(s.name.find("_norm.weight") != std::string::npos && s.name.find("self_attn") != std::string::npos, false);
}

TEST(ModelBuild, TargetScoreBookkeeping) {
  const TargetConfig c = TinyTarget("qwen3");
  ScoreShape s;
  s.batch = 2;
  s.tokens = 4;
  s.pages_per_seq = 2;
  s.page_size = 4;
  s.total_pages = 8;
  s.want_argmax = true;
  s.hidden_layers = {0, 2};
  s.want_accept = true;
  const Program p = BuildTargetScore(c, s);
  const int nw = static_cast<int>(TargetWeightSpecs(c).size());
  EXPECT_EQ(p.num_params, nw + 5);
  EXPECT_EQ(p.num_outputs, 5);
  EXPECT_EQ(p.output_names, (std::vector<std::string>{"k_cache", "v_cache", "argmax", "hidden", "accept"}));
  EXPECT_NE(p.mlir.find("tensor<3x8x4x2x16xf32> {tf.aliasing_output = 0 : i32}"), std::string::npos);
  EXPECT_NE(p.mlir.find("tensor<3x8x4x2x16xf32> {tf.aliasing_output = 1 : i32}"), std::string::npos);
  EXPECT_NE(p.mlir.find("-> (tensor<3x8x4x2x16xf32>, tensor<3x8x4x2x16xf32>, tensor<2x4xi32>, tensor<2x4x64xf32>, tensor<2x5xi32>)"),
            std::string::npos);

  ScoreShape only_logits = s;
  only_logits.want_argmax = false;
  only_logits.want_accept = false;
  only_logits.hidden_layers.clear();
  only_logits.want_logits = true;
  EXPECT_EQ(BuildTargetScore(c, only_logits).output_names, (std::vector<std::string>{"k_cache", "v_cache", "logits"}));
}

TEST(ModelBuild, TargetScoreErrors) {
  TargetConfig c = TinyTarget("qwen3");
  ScoreShape s;
  s.hidden_layers = {3};
  EXPECT_THROW(BuildTargetScore(c, s), std::invalid_argument);
  s.hidden_layers = {};
  s.tokens = 0;
  EXPECT_THROW(BuildTargetScore(c, s), std::invalid_argument);
  c.num_kv_heads = 3;
  EXPECT_THROW(TargetWeightSpecs(c), std::invalid_argument);
  c = TinyTarget("mistral");
  EXPECT_THROW(TargetWeightSpecs(c), std::invalid_argument);
}

TEST(ModelBuild, DrafterSpecsAndBookkeeping) {
  const DrafterConfig d = TinyDrafter();
  const auto specs = DrafterWeightSpecs(d);
  ASSERT_EQ(specs.size(), 2u + 2 * 11 + 1);
  EXPECT_EQ(specs[0].name, "fc.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(specs[1].name, "hidden_norm.weight");
  EXPECT_EQ(specs[2].name, "layers.0.input_layernorm.weight");
  EXPECT_EQ(specs[7].name, "layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(specs[7].shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(specs.back().name, "norm.weight");

  DraftShape s;
  s.ctx_capacity = 16;
  s.append_rows = 4;
  s.block = 4;
  const Program p = BuildDrafter(d, TinyTarget("qwen3"), s);
  EXPECT_EQ(p.num_params, static_cast<int>(specs.size()) + 7);
  EXPECT_EQ(p.output_names, (std::vector<std::string>{"ctx_k", "ctx_v", "draft"}));
  EXPECT_NE(p.mlir.find("-> (tensor<2x16x2x8xf32>, tensor<2x16x2x8xf32>, tensor<1x4xi32>)"), std::string::npos);
  s.want_logits = true;
  EXPECT_EQ(BuildDrafter(d, TinyTarget("qwen3"), s).num_outputs, 4);
}

TEST(ModelBuild, DrafterErrors) {
  DrafterConfig d = TinyDrafter();
  DraftShape s;
  s.ctx_capacity = 4;
  s.append_rows = 8;
  s.block = 4;
  EXPECT_THROW(BuildDrafter(d, TinyTarget("qwen3"), s), std::invalid_argument);  // A > C
  s.append_rows = 4;
  d.hidden_size = 16;
  EXPECT_THROW(BuildDrafter(d, TinyTarget("qwen3"), s), std::invalid_argument);  // H differs
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
