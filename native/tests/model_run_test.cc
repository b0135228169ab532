// Smoke tests of the model programs on the CPU plugin with a tiny random config: the target
// score program and the drafter compile and run with their inputs bound by name, paging is
// consistent (one chunk == two chunks through different pages; rows of a batch do not see each
// other), and one speculative round trip (target -> drafter -> verify through the draft pool)
// gives the accept vector the rule says. Numerical oracle comparisons live in the TypeScript tests.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <stdexcept>

#include "hlo_test_runtime.h"
#include "models/drafter.h"
#include "models/target.h"

namespace dflash::models {
namespace {

using testing::Download;
using testing::Upload;
using BufPtr = std::unique_ptr<pjrt::Buffer>;

TargetConfig Tiny() {
  TargetConfig c;
  c.family = "qwen3";
  c.vocab_size = 96;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.rope_theta = 10000;
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
  d.rope_theta = 1e6;
  d.block_size = 4;
  d.mask_token_id = 95;
  d.target_layer_ids = {0, 1};
  return d;
}

// Random weights for specs by name: norms near 1, matrices ~N(0, 0.3).
std::map<std::string, BufPtr> RandomWeights(const std::vector<WeightSpec>& specs, uint32_t seed, const std::string& prefix = "") {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::map<std::string, BufPtr> out;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (auto d : s.shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = s.shape.size() == 1 ? 1.0f + 0.1f * dist(gen) : 0.3f * dist(gen);
    out[prefix + s.name] = Upload(v, s.shape);
  }
  return out;
}

BufPtr Zeros(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return Upload(std::vector<float>(n, 0.0f), dims);
}

// Arguments in the program's parameter order, looked up by name.
std::vector<pjrt::Buffer*> Args(const Program& p, const std::map<std::string, pjrt::Buffer*>& named) {
  std::vector<pjrt::Buffer*> args;
  for (const auto& in : p.inputs) {
    auto it = named.find(in.name);
    if (it == named.end()) throw std::runtime_error("test: no buffer for input " + in.name);
    args.push_back(it->second);
  }
  return args;
}

void AddWeights(std::map<std::string, pjrt::Buffer*>& named, const std::map<std::string, BufPtr>& w) {
  for (const auto& [k, v] : w) named[k] = v.get();
}

BufPtr Take(std::vector<BufPtr>& out, const Program& p, const std::string& name) { return std::move(out.at(p.output_index(name))); }

constexpr int64_t kPages = 8, kPageSize = 4;
const Numerics kF32{};

TEST(ModelRun, TargetPagingIsConsistent) {
  DFLASH_REQUIRE_PLUGIN();
  const TargetConfig c = Tiny();
  const auto weights = RandomWeights(TargetWeightSpecs(c, pjrt::DType::kF32), 1);
  const std::vector<int64_t> cache{c.num_layers, kPages, kPageSize, c.num_kv_heads, c.head_dim};
  const std::vector<int32_t> seq{5, 17, 3, 88, 42, 9, 61, 0};
  ScoreShape s;
  s.pages_per_row = 2;
  s.page_size = kPageSize;
  s.total_pages = kPages;
  s.want_logits = true;

  // One chunk of 8 tokens in pages {3, 6}.
  s.tokens = 8;
  const Program one = BuildTargetScore(c, kF32, s);
  auto kc = Zeros(cache), vc = Zeros(cache);
  auto tok = Upload(seq, {1, 8});
  auto pos = Upload(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}, {1, 8});
  auto tab = Upload(std::vector<int32_t>{3, 6}, {1, 2});
  std::map<std::string, pjrt::Buffer*> named{{"k_cache", kc.get()}, {"v_cache", vc.get()}, {"tokens", tok.get()},
                                             {"positions", pos.get()}, {"block_table", tab.get()}};
  AddWeights(named, weights);
  auto out1 = testing::CompileAndRun(one.mlir, Args(one, named));
  const auto logits_one = Download<float>(*Take(out1, one, "logits"));

  // Two chunks of 4 (the second padded: 3 tokens + one position -1) in pages {5, 2}, in a batch
  // of two rows whose other row is padding.
  s.tokens = 4;
  s.rows = 2;
  const Program four = BuildTargetScore(c, kF32, s);
  auto exe = testing::TestClient()->Compile(four.mlir);
  auto kc2 = Zeros(cache), vc2 = Zeros(cache);
  auto tab2 = Upload(std::vector<int32_t>{5, 2, 0, 0}, {2, 2});
  auto t1 = Upload(std::vector<int32_t>{seq[0], seq[1], seq[2], seq[3], 0, 0, 0, 0}, {2, 4});
  auto p1 = Upload(std::vector<int32_t>{0, 1, 2, 3, -1, -1, -1, -1}, {2, 4});
  named = {{"k_cache", kc2.get()}, {"v_cache", vc2.get()}, {"tokens", t1.get()}, {"positions", p1.get()}, {"block_table", tab2.get()}};
  AddWeights(named, weights);
  auto outa = exe->Execute(Args(four, named));
  auto ka = Take(outa, four, "k_cache"), va = Take(outa, four, "v_cache");
  auto t2 = Upload(std::vector<int32_t>{seq[4], seq[5], seq[6], 0, 0, 0, 0, 0}, {2, 4});
  auto p2 = Upload(std::vector<int32_t>{4, 5, 6, -1, -1, -1, -1, -1}, {2, 4});
  named = {{"k_cache", ka.get()}, {"v_cache", va.get()}, {"tokens", t2.get()}, {"positions", p2.get()}, {"block_table", tab2.get()}};
  AddWeights(named, weights);
  auto outb = exe->Execute(Args(four, named));
  const auto la = Download<float>(*Take(outa, four, "logits")), lb = Download<float>(*Take(outb, four, "logits"));
  const int64_t V = c.vocab_size;
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t v = 0; v < V; ++v) {
      const float got = i < 4 ? la[i * V + v] : lb[(i - 4) * V + v];
      ASSERT_NEAR(got, logits_one[i * V + v], 1e-4) << "token " << i << " vocab " << v;
    }
}

TEST(ModelRun, SpeculativeRoundTripThroughTheDraftPool) {
  DFLASH_REQUIRE_PLUGIN();
  const TargetConfig c = Tiny();
  const DrafterConfig d = TinyDrafter();
  const int64_t B = d.block_size, M = 3;  // pool rows: 2 sequences + the "none" row
  auto weights = RandomWeights(TargetWeightSpecs(c, pjrt::DType::kF32), 2);
  auto dweights = RandomWeights(DrafterWeightSpecs(d, pjrt::DType::kF32, c), 3, kDrafterPrefix);
  auto kc = Zeros({c.num_layers, kPages, kPageSize, c.num_kv_heads, c.head_dim});
  auto vc = Zeros({c.num_layers, kPages, kPageSize, c.num_kv_heads, c.head_dim});
  auto dk = Zeros({d.num_layers, kPages, kPageSize, d.num_kv_heads, d.head_dim});
  auto dv = Zeros({d.num_layers, kPages, kPageSize, d.num_kv_heads, d.head_dim});
  auto pool = Upload(std::vector<int32_t>(M * B, 0), {M, B});
  auto tab = Upload(std::vector<int32_t>{1, 4}, {1, 2});

  // A plain step scores the prompt's 4 tokens (the engine prefills all but the last; here the
  // whole prompt in one call) with hidden features and accept.
  ScoreShape s;
  s.tokens = B;
  s.pages_per_row = 2;
  s.page_size = kPageSize;
  s.total_pages = kPages;
  s.want_argmax = true;
  s.hidden_layers = {0, 1};
  s.want_accept = true;
  const Program score = BuildTargetScore(c, kF32, s);
  auto exe = testing::TestClient()->Compile(score.mlir);
  auto tok = Upload(std::vector<int32_t>{7, 8, 9, 10}, {1, B});
  auto pos = Upload(std::vector<int32_t>{0, 1, 2, 3}, {1, B});
  std::map<std::string, pjrt::Buffer*> named{{"k_cache", kc.get()}, {"v_cache", vc.get()}, {"tokens", tok.get()},
                                             {"positions", pos.get()}, {"block_table", tab.get()}};
  AddWeights(named, weights);
  auto out = exe->Execute(Args(score, named));
  const auto am = Download<int32_t>(*out[score.output_index("argmax")]);
  auto feats = Take(out, score, "hidden");
  auto k2 = Take(out, score, "k_cache"), v2 = Take(out, score, "v_cache");
  for (int32_t t : am) EXPECT_TRUE(t >= 0 && t < c.vocab_size);

  // The drafter appends the 4 context rows and drafts [last, ...] into pool row 1.
  DraftShape ds;
  ds.append = B;
  ds.block = B;
  ds.pages_per_row = 2;
  ds.page_size = kPageSize;
  ds.total_pages = kPages;
  ds.pool_rows = M;
  ds.pool_width = B;
  const Program draft = BuildDrafter(d, c, kF32, ds);
  auto last = Upload(std::vector<int32_t>{am[3]}, {1});
  auto start = Upload(std::vector<int32_t>{4}, {1});
  auto len = Upload(std::vector<int32_t>{static_cast<int32_t>(B)}, {1});
  auto slot = Upload(std::vector<int32_t>{1}, {1});
  named = {{"dk_cache", dk.get()}, {"dv_cache", dv.get()}, {"feats", feats.get()}, {"positions", pos.get()}, {"block_table", tab.get()},
           {"last", last.get()}, {"block_start", start.get()}, {"block_len", len.get()}, {"draft_pool", pool.get()}, {"pool_slot", slot.get()}};
  AddWeights(named, weights);
  AddWeights(named, dweights);
  auto dout = testing::CompileAndRun(draft.mlir, Args(draft, named));
  auto pool2 = Take(dout, draft, "draft_pool");
  const auto pooled = Download<int32_t>(*pool2);
  ASSERT_EQ(pooled.size(), static_cast<size_t>(M * B));
  EXPECT_EQ(pooled[1 * B], am[3]);  // row 1 = [last, proposals]; rows 0 and 2 untouched
  for (int64_t i = 0; i < B; ++i) EXPECT_EQ(pooled[i], 0);
  for (int64_t i = 1; i < B; ++i) EXPECT_TRUE(pooled[B + i] >= 0 && pooled[B + i] < c.vocab_size);

  // Verify row 0 takes its tokens 1..B-1 from pool row 1, at positions 4..7.
  ScoreShape vs = s;
  vs.pool_rows = M;
  vs.pool_width = B;
  const Program verify = BuildTargetScore(c, kF32, vs);
  auto vtok = Upload(std::vector<int32_t>{am[3], 0, 0, 0}, {1, B});
  auto vpos = Upload(std::vector<int32_t>{4, 5, 6, 7}, {1, B});
  named = {{"k_cache", k2.get()}, {"v_cache", v2.get()}, {"tokens", vtok.get()}, {"positions", vpos.get()}, {"block_table", tab.get()},
           {"draft_pool", pool2.get()}, {"pool_slot", slot.get()}};
  AddWeights(named, weights);
  auto vout = testing::CompileAndRun(verify.mlir, Args(verify, named));
  const auto vam = Download<int32_t>(*vout[verify.output_index("argmax")]);
  const auto accept = Download<int32_t>(*vout[verify.output_index("accept")]);
  const std::vector<int32_t> block(pooled.begin() + B, pooled.begin() + 2 * B);
  int32_t a = 0;
  while (a + 1 < B && block[a + 1] == vam[a]) ++a;
  std::vector<int32_t> want(B + 1, 0);
  want[0] = a + 1;
  for (int32_t i = 1; i <= a; ++i) want[i] = block[i];
  want[a + 1] = vam[a];
  EXPECT_EQ(accept, want);
}

}  // namespace
}  // namespace dflash::models
