// Smoke tests of the model programs on the CPU plugin with a tiny random config: the target
// score program and the drafter compile and run, paging is consistent (one chunk == two chunks
// through different pages), and one speculative round trip (target -> drafter -> verify) gives
// well-formed outputs. Numerical oracle comparisons live in the TypeScript tests.
#include <gtest/gtest.h>

#include <random>

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
  d.rope_theta = 1e6;
  d.block_size = 4;
  d.mask_token_id = 95;
  d.target_layer_ids = {0, 1};
  d.weight_dtype = pjrt::DType::kF32;
  return d;
}

// Random weights for specs: norms near 1, matrices ~N(0, 0.3).
std::vector<BufPtr> RandomWeights(const std::vector<WeightSpec>& specs, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<BufPtr> out;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (auto d : s.shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = s.shape.size() == 1 ? 1.0f + 0.1f * dist(gen) : 0.3f * dist(gen);
    if (s.dtype == pjrt::DType::kBF16) {
      std::vector<uint16_t> h(n);
      for (int64_t i = 0; i < n; ++i) h[i] = testing::ToBf16(v[i]);
      out.push_back(Upload(h, s.shape));
    } else {
      out.push_back(Upload(v, s.shape));
    }
  }
  return out;
}

std::vector<pjrt::Buffer*> Ptrs(const std::vector<BufPtr>& v) {
  std::vector<pjrt::Buffer*> p;
  for (auto& b : v) p.push_back(b.get());
  return p;
}

BufPtr Zeros(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return Upload(std::vector<float>(n, 0.0f), dims);
}

constexpr int64_t kPages = 8, kPageSize = 4;

std::unique_ptr<pjrt::LoadedExecutable> TestClientCompile(const Program& p) { return testing::TestClient()->Compile(p.mlir); }

TEST(ModelRun, TargetPagingIsConsistent) {
  DFLASH_REQUIRE_PLUGIN();
  const TargetConfig c = Tiny();
  const auto weights = RandomWeights(TargetWeightSpecs(c), 1);
  const std::vector<int64_t> cache{c.num_layers, kPages, kPageSize, c.num_kv_heads, c.head_dim};
  const std::vector<int32_t> seq{5, 17, 3, 88, 42, 9, 61, 0};
  ScoreShape s;
  s.pages_per_seq = 2;
  s.page_size = kPageSize;
  s.total_pages = kPages;
  s.want_logits = true;

  // One chunk of 8 tokens in pages {3, 6}.
  s.tokens = 8;
  auto one = TestClientCompile(BuildTargetScore(c, s));
  auto args = Ptrs(weights);
  auto kc = Zeros(cache), vc = Zeros(cache);
  auto tok = Upload(seq, {1, 8});
  auto pos = Upload(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}, {1, 8});
  auto tab = Upload(std::vector<int32_t>{3, 6}, {1, 2});
  args.insert(args.end(), {kc.get(), vc.get(), tok.get(), pos.get(), tab.get()});
  auto out1 = one->Execute(args);
  const auto logits_one = Download<float>(*out1[2]);

  // Two chunks of 4 (the second padded: 3 tokens + one position -1) in pages {5, 2}.
  s.tokens = 4;
  auto four = TestClientCompile(BuildTargetScore(c, s));
  auto kc2 = Zeros(cache), vc2 = Zeros(cache);
  auto tab2 = Upload(std::vector<int32_t>{5, 2}, {1, 2});
  auto t1 = Upload(std::vector<int32_t>(seq.begin(), seq.begin() + 4), {1, 4});
  auto p1 = Upload(std::vector<int32_t>{0, 1, 2, 3}, {1, 4});
  args = Ptrs(weights);
  args.insert(args.end(), {kc2.get(), vc2.get(), t1.get(), p1.get(), tab2.get()});
  auto outa = four->Execute(args);
  auto t2 = Upload(std::vector<int32_t>{seq[4], seq[5], seq[6], 0}, {1, 4});
  auto p2 = Upload(std::vector<int32_t>{4, 5, 6, -1}, {1, 4});
  args = Ptrs(weights);
  args.insert(args.end(), {outa[0].get(), outa[1].get(), t2.get(), p2.get(), tab2.get()});
  auto outb = four->Execute(args);
  const auto la = Download<float>(*outa[2]), lb = Download<float>(*outb[2]);
  const int64_t V = c.vocab_size;
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t v = 0; v < V; ++v) {
      const float got = i < 4 ? la[i * V + v] : lb[(i - 4) * V + v];
      ASSERT_NEAR(got, logits_one[i * V + v], 1e-4) << "token " << i << " vocab " << v;
    }
}

TEST(ModelRun, SpeculativeRoundTrip) {
  DFLASH_REQUIRE_PLUGIN();
  const TargetConfig c = Tiny();
  const DrafterConfig d = TinyDrafter();
  const int64_t B = d.block_size, C = 16, n_feat = 2 * c.hidden_size;
  const auto tw = RandomWeights(TargetWeightSpecs(c), 2);
  const auto dw = RandomWeights(DrafterWeightSpecs(d), 3);
  const std::vector<int64_t> cache{c.num_layers, kPages, kPageSize, c.num_kv_heads, c.head_dim};
  auto kc = Zeros(cache), vc = Zeros(cache);
  auto ctx_k = Zeros({d.num_layers, C, d.num_kv_heads, d.head_dim}), ctx_v = Zeros({d.num_layers, C, d.num_kv_heads, d.head_dim});

  // Prefill 4 prompt tokens: argmax + hidden + accept (K = B).
  ScoreShape s;
  s.tokens = B;
  s.pages_per_seq = 2;
  s.page_size = kPageSize;
  s.total_pages = kPages;
  s.want_argmax = true;
  s.hidden_layers = {0, 1};
  s.want_accept = true;
  const Program score = BuildTargetScore(c, s);
  ASSERT_EQ(score.output_names, (std::vector<std::string>{"k_cache", "v_cache", "argmax", "hidden", "accept"}));
  auto exe = TestClientCompile(score);
  auto tab = Upload(std::vector<int32_t>{1, 4}, {1, 2});
  auto tok = Upload(std::vector<int32_t>{7, 8, 9, 10}, {1, B});
  auto pos = Upload(std::vector<int32_t>{0, 1, 2, 3}, {1, B});
  auto args = Ptrs(tw);
  args.insert(args.end(), {kc.get(), vc.get(), tok.get(), pos.get(), tab.get()});
  auto out = exe->Execute(args);
  const auto am = Download<int32_t>(*out[2]);
  ASSERT_EQ(out[3]->dims(), (std::vector<int64_t>{1, B, n_feat}));
  for (int32_t t : am) EXPECT_TRUE(t >= 0 && t < c.vocab_size);

  // Drafter on the prompt's features: valid rows n = 4, last token = the target's next token.
  DraftShape ds;
  ds.ctx_capacity = C;
  ds.append_rows = B;
  ds.block = B;
  ds.want_logits = true;
  const Program draft = BuildDrafter(d, c, ds);
  ASSERT_EQ(draft.output_names, (std::vector<std::string>{"ctx_k", "ctx_v", "draft", "logits"}));
  auto dexe = TestClientCompile(draft);
  auto embed_w = tw.front().get(), lm_w = tw.back().get();
  auto acc = Upload(std::vector<int32_t>{4, 8, 9, 10, am[3]}, {1, B + 1});
  auto len0 = Upload(std::vector<int32_t>{0}, {});
  auto dargs = Ptrs(dw);
  dargs.insert(dargs.end(), {embed_w, lm_w, ctx_k.get(), ctx_v.get(), out[3].get(), acc.get(), len0.get()});
  auto dout = dexe->Execute(dargs);
  const auto block = Download<int32_t>(*dout[2]);
  const auto dlogits = Download<float>(*dout[3]);
  ASSERT_EQ(block.size(), static_cast<size_t>(B));
  EXPECT_EQ(block[0], am[3]);
  for (int64_t i = 1; i < B; ++i) {  // proposals are the argmax of the returned logits
    int32_t best = 0;
    for (int64_t v = 1; v < c.vocab_size; ++v)
      if (dlogits[i * c.vocab_size + v] > dlogits[i * c.vocab_size + best]) best = static_cast<int32_t>(v);
    EXPECT_EQ(block[i], best);
  }

  // Verify the draft at positions 4..7 (pages cover 8 slots), feeding `draft` straight in.
  auto pos2 = Upload(std::vector<int32_t>{4, 5, 6, 7}, {1, B});
  args = Ptrs(tw);
  args.insert(args.end(), {out[0].get(), out[1].get(), dout[2].get(), pos2.get(), tab.get()});
  auto vout = exe->Execute(args);
  const auto vam = Download<int32_t>(*vout[2]);
  const auto accept = Download<int32_t>(*vout[4]);
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
