// Tensor parallelism on the CPU plugin's virtual devices: the same target score and drafter
// programs built for 2 and 4 devices (models/parallel.h) give the one-device logits within f32
// tolerance — XLA's SPMD partitioner splits them and adds the all-reduces, the sums only change
// order — with every cache and weight split as its signature says. 4 devices over the tiny
// models' 2 KV heads exercise the repeated-KV-head layout. Engine-level checks (greedy tokens,
// speculative == plain, replicas) are in test/41.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "hlo_test_runtime.h"
#include "models/drafter.h"
#include "models/parallel.h"
#include "models/target.h"

namespace dflash::models {
namespace {

using ArrPtr = std::unique_ptr<pjrt::Array>;

TargetConfig Tiny() {
  TargetConfig c;
  c.family = "qwen3";
  c.vocab_size = 96;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.qk_norm = true;
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
  d.mask_token_id = 95;
  d.target_layer_ids = {0, 1};
  return d;
}

// Host data laid out as `sharding` says over `mesh`: device i gets its part along the split dim.
ArrPtr Put(const pjrt::Mesh& mesh, const std::vector<float>& host, const std::vector<int64_t>& dims, hlo::Sharding sharding) {
  const int64_t n = static_cast<int64_t>(mesh.size());
  if (n == 1 || sharding.replicated()) return mesh.Upload(host.data(), pjrt::DType::kF32, dims);
  const int d = sharding.dim;
  std::vector<int64_t> part_dims = dims;
  part_dims[d] /= n;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= dims[i];
  for (size_t i = d + 1; i < dims.size(); ++i) inner *= dims[i];
  const int64_t block = part_dims[d] * inner;
  std::vector<std::vector<float>> parts(n);
  std::vector<const void*> ptrs;
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t o = 0; o < outer; ++o)
      parts[k].insert(parts[k].end(), host.begin() + o * dims[d] * inner + k * block, host.begin() + o * dims[d] * inner + (k + 1) * block);
    ptrs.push_back(parts[k].data());
  }
  return mesh.UploadShards(ptrs, pjrt::DType::kF32, part_dims, d);
}

std::map<std::string, std::vector<float>> RandomHost(const std::vector<WeightSpec>& specs, uint32_t seed, const std::string& prefix = "") {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::map<std::string, std::vector<float>> out;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (auto d : s.shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = s.shape.size() == 1 ? 1.0f + 0.1f * dist(gen) : 0.3f * dist(gen);
    out[prefix + s.name] = v;
  }
  return out;
}

// Runs `p` on `mesh` with every input taken from `host` (by name; missing names are zeros),
// laid out as the program's signature says; returns the replicated outputs' host values by name.
std::map<std::string, std::vector<float>> RunOn(const pjrt::Mesh& mesh, const Program& p, const std::map<std::string, std::vector<float>>& host,
                                              const std::map<std::string, std::vector<int32_t>>& ints) {
  std::vector<ArrPtr> owned;
  std::vector<pjrt::Array*> args;
  for (const auto& in : p.inputs) {
    int64_t n = 1;
    for (auto d : in.shape) n *= d;
    if (in.dtype == pjrt::DType::kS32) {
      auto it = ints.find(in.name);
      const std::vector<int32_t> v = it == ints.end() ? std::vector<int32_t>(n, 0) : it->second;
      owned.push_back(mesh.Upload(v.data(), pjrt::DType::kS32, in.shape));
    } else {
      auto it = host.find(in.name);
      owned.push_back(Put(mesh, it == host.end() ? std::vector<float>(n, 0.0f) : it->second, in.shape, in.sharding));
    }
    EXPECT_EQ(owned.back()->num_shards() > 1 ? owned.back()->split() : -1, mesh.size() > 1 ? in.sharding.dim : -1) << in.name;
    args.push_back(owned.back().get());
  }
  auto exe = mesh.Compile(p.mlir);
  std::vector<int> splits;
  for (const auto& o : p.outputs) splits.push_back(mesh.size() > 1 ? o.sharding.dim : -1);
  auto out = mesh.Run(*exe, args, splits);
  std::map<std::string, std::vector<float>> res;
  for (size_t o = 0; o < p.outputs.size(); ++o) {
    const auto& spec = p.outputs[o];
    if (!spec.sharding.replicated() && mesh.size() > 1) {
      // A split output (the caches): each device holds 1/n of it.
      EXPECT_EQ(out[o]->shard(0).dims()[spec.sharding.dim] * static_cast<int64_t>(mesh.size()), spec.shape[spec.sharding.dim]);
      continue;
    }
    if (spec.dtype == pjrt::DType::kS32) {
      const auto v = testing::Download<int32_t>(out[o]->shard(mesh.size() - 1));
      res[spec.name] = std::vector<float>(v.begin(), v.end());
    } else {
      res[spec.name] = testing::Download<float>(out[o]->shard(mesh.size() - 1));  // any device: all hold the same
    }
  }
  return res;
}

double MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

class ModelSpmd : public ::testing::TestWithParam<int64_t> {};

TEST_P(ModelSpmd, TargetScoreMatchesOneDevice) {
  DFLASH_REQUIRE_PLUGIN();
  const int64_t n = GetParam();
  const TargetConfig c = Tiny();
  const auto host = RandomHost(TargetWeightSpecs(c, pjrt::DType::kF32), 7);
  const std::map<std::string, std::vector<int32_t>> ints = {
      {"tokens", {5, 17, 3, 88, 42, 9, 61, 0, 7, 7, 1, 2, 3, 4, 5, 6}},
      {"positions", {0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, -1, -1, -1}},
      {"block_table", {3, 6, 1, 2}}};
  ScoreShape s{2, 8, 2, 4, 8, true, true, false, {0, 1}};
  const auto one = RunOn(testing::TestMesh(1), BuildTargetScore(c, Numerics{}, s), host, ints);
  s.devices = n;
  const Program p = BuildTargetScore(c, Numerics{}, s);
  const auto many = RunOn(testing::TestMesh(n), p, host, ints);
  EXPECT_LT(MaxDiff(one.at("logits"), many.at("logits")), 2e-4);
  EXPECT_LT(MaxDiff(one.at("hidden"), many.at("hidden")), 2e-4);
  EXPECT_EQ(one.at("argmax"), many.at("argmax"));
}

TEST_P(ModelSpmd, DrafterMatchesOneDevice) {
  DFLASH_REQUIRE_PLUGIN();
  const int64_t n = GetParam();
  const TargetConfig c = Tiny();
  const DrafterConfig d = TinyDrafter();
  auto host = RandomHost(TargetWeightSpecs(c, pjrt::DType::kF32), 7);
  for (auto& [k, v] : RandomHost(DrafterWeightSpecs(d, pjrt::DType::kF32, c), 8, kDrafterPrefix)) host[k] = v;
  std::vector<float> feats(4 * 2 * 32);
  std::mt19937 gen(3);
  std::normal_distribution<float> dist;
  for (auto& f : feats) f = dist(gen);
  host["feats"] = feats;
  const std::map<std::string, std::vector<int32_t>> ints = {
      {"positions", {0, 1, 2, 3}}, {"block_table", {2, 5}}, {"last", {11}}, {"block_start", {4}}, {"block_len", {4}}};
  DraftShape s{1, 4, 4, 2, 4, 8, 0, 0, true, false};
  const auto one = RunOn(testing::TestMesh(1), BuildDrafter(d, c, Numerics{}, s), host, ints);
  s.devices = n;
  const auto many = RunOn(testing::TestMesh(n), BuildDrafter(d, c, Numerics{}, s), host, ints);
  EXPECT_LT(MaxDiff(one.at("logits"), many.at("logits")), 2e-4);
  EXPECT_EQ(one.at("draft"), many.at("draft"));
  // The drafter whole on every device (drafterSharding 'replicated'): only the target's
  // vocabulary-split embedding and LM head are split.
  s.replicated = true;
  const Program whole = BuildDrafter(d, c, Numerics{}, s);
  EXPECT_TRUE(whole.inputs[whole.input_index("dk_cache")].sharding.replicated());
  EXPECT_EQ(whole.inputs[whole.input_index("model.embed_tokens.weight")].sharding.dim, 0);
  const auto rep = RunOn(testing::TestMesh(n), whole, host, ints);
  EXPECT_LT(MaxDiff(one.at("logits"), rep.at("logits")), 2e-4);
  EXPECT_EQ(one.at("draft"), rep.at("draft"));
}

INSTANTIATE_TEST_SUITE_P(Devices, ModelSpmd, ::testing::Values(2, 4));

TEST(Mesh, AnExecutableLoadsOntoOtherDevices) {
  DFLASH_REQUIRE_PLUGIN();
  // A 2-device program compiled for devices {0, 1}, serialized, loaded onto {2, 3} (what the
  // replicas of a data-parallel engine do instead of compiling again).
  hlo::Builder b(2);
  const auto x = b.Input("x", {4}, hlo::DType::kF32, std::nullopt, hlo::Sharding::Split(0));
  const std::string mlir = b.Finish({b.Mul(x, b.Splat(2, {4}, hlo::DType::kF32))}, {hlo::Sharding::Split(0)});
  const pjrt::Mesh first = testing::TestMesh(2);
  const pjrt::Mesh other = pjrt::Mesh::OfIds(testing::TestClient(), {first.client().device_id(testing::TestClient()->addressable_devices()[2]),
                                                                     first.client().device_id(testing::TestClient()->addressable_devices()[3])});
  const std::string bytes = first.Compile(mlir)->Serialize();
  auto exe = other.Deserialize(bytes);
  ASSERT_EQ(exe->devices(), other.devices());
  const std::vector<float> a = {1, 2}, c = {3, 4};
  auto in = other.UploadShards({a.data(), c.data()}, pjrt::DType::kF32, {2}, 0);
  auto out = other.Run(*exe, {in.get()}, {0});
  EXPECT_EQ(testing::Download<float>(out[0]->shard(0)), (std::vector<float>{2, 4}));
  EXPECT_EQ(testing::Download<float>(out[0]->shard(1)), (std::vector<float>{6, 8}));
  EXPECT_EQ(out[0]->shard(1).device(), other.devices()[1]);
}

}  // namespace
}  // namespace dflash::models
