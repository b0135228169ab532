// Paged attention with the context length as data (models/paged_attention.h):
// 1. against the plain reference (the whole rows read, one softmax: layers.h Attention), causal
//    and with a sliding window, over several chunks;
// 2. batch invariance: in a batch of two, row 0's logits are bit-for-bit the same however far its
//    neighbour reaches (more loop iterations) and whatever the block table's width, at the
//    code-pair / Qwen3 head shapes (hd 64, 2 kv heads), f32 and bf16.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "hlo_test_runtime.h"
#include "models/layers.h"
#include "models/paged.h"
#include "models/paged_attention.h"
#include "models/target.h"

namespace dflash::models {
namespace {

using testing::Download;
using testing::Upload;
using BufPtr = std::unique_ptr<pjrt::Buffer>;

TargetConfig HeadShaped() {
  TargetConfig c;
  c.family = "qwen3";
  c.vocab_size = 64;
  c.hidden_size = 128;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.rope_theta = 10000;
  c.qk_norm = true;
  return c;
}

constexpr int64_t kPageSize = 16, kTotalPages = 66;

// Logits (K x V) of row 0 of a batch: `tokens` at positions 0.. in page 1 (a fresh cache), run
// by a score program with `pages` table entries per row; with `neighbour` >= 0 a second row scores
// the same tokens from that position on (in pages 2.., so the batch loops over more chunks).
std::vector<float> RowLogits(const TargetConfig& c, const Numerics& n, const std::map<std::string, BufPtr>& weights,
                             const std::vector<int32_t>& tokens, int64_t pages, int64_t neighbour = -1) {
  ScoreShape s;
  s.rows = neighbour >= 0 ? 2 : 1;
  s.tokens = static_cast<int64_t>(tokens.size());
  s.pages_per_row = pages;
  s.page_size = kPageSize;
  s.total_pages = kTotalPages;
  s.want_logits = true;
  const Program p = BuildTargetScore(c, n, s);
  auto zeros = [&](const std::vector<int64_t>& dims) {
    int64_t count = 1;
    for (auto d : dims) count *= d;
    return n.kv_dtype == pjrt::DType::kF32 ? Upload(std::vector<float>(count, 0.0f), dims) : Upload(std::vector<uint16_t>(count, 0), dims);
  };
  auto kc = zeros(KeyCacheDims(c.num_layers, kTotalPages, kPageSize, c.num_kv_heads, c.head_dim));
  auto vc = zeros(ValueCacheDims(c.num_layers, kTotalPages, kPageSize, c.num_kv_heads, c.head_dim));
  std::vector<int32_t> all_tokens, positions, table(s.rows * pages, 0);
  for (int64_t r = 0; r < s.rows; ++r)
    for (size_t i = 0; i < tokens.size(); ++i) {
      all_tokens.push_back(tokens[i]);
      positions.push_back(static_cast<int32_t>((r == 0 ? 0 : neighbour) + i));
    }
  table[0] = 1;
  if (neighbour >= 0)
    for (int64_t j = 0; j < pages && 2 + j < kTotalPages; ++j) table[pages + j] = static_cast<int32_t>(2 + j);
  auto tok = Upload(all_tokens, {s.rows, s.tokens});
  auto pos = Upload(positions, {s.rows, s.tokens});
  auto tab = Upload(table, {s.rows, pages});
  std::map<std::string, pjrt::Buffer*> named{{"k_cache", kc.get()}, {"v_cache", vc.get()}, {"tokens", tok.get()},
                                             {"positions", pos.get()}, {"block_table", tab.get()}};
  for (const auto& [k, v] : weights) named[k] = v.get();
  std::vector<pjrt::Buffer*> args;
  for (const auto& in : p.inputs) args.push_back(named.at(in.name));
  auto out = testing::CompileAndRun(p.mlir, args);
  auto all = Download<float>(*out.at(p.output_index("logits")));
  all.resize(tokens.size() * static_cast<size_t>(c.vocab_size));  // row 0
  return all;
}

// Random weights at `dtype` (bf16 as raw bits).
std::map<std::string, BufPtr> RandomWeights(const TargetConfig& c, pjrt::DType dtype) {
  std::mt19937 gen(7);
  std::normal_distribution<float> dist;
  std::map<std::string, BufPtr> weights;
  for (const auto& s : TargetWeightSpecs(c, dtype)) {
    int64_t count = 1;
    for (auto d : s.shape) count *= d;
    std::vector<float> v(count);
    for (auto& x : v) x = s.shape.size() == 1 ? 1.0f + 0.1f * dist(gen) : 0.2f * dist(gen);
    if (dtype == pjrt::DType::kF32) {
      weights[s.name] = Upload(v, s.shape);
    } else {
      std::vector<uint16_t> bits(v.size());
      for (size_t i = 0; i < v.size(); ++i) bits[i] = testing::ToBf16(v[i]);
      weights[s.name] = Upload(bits, s.shape);
    }
  }
  return weights;
}

// Row 0 alone, against a neighbour that reaches further (more loop iterations) and a wider table.
void ExpectSameLogitsWhateverTheBatchReaches(const Numerics& n) {
  const TargetConfig c = HeadShaped();
  const auto weights = RandomWeights(c, n.dtype);
  const int64_t chunk_pages = KeyChunkSlots(kPageSize, n.key_chunk_slots) / kPageSize;
  // Plain decode (1 token), a verify-sized block (16): the rows the program runs per kv head differ.
  for (const std::vector<int32_t>& tokens :
       {std::vector<int32_t>{5}, std::vector<int32_t>{5, 17, 3, 60, 42, 9, 61, 0, 7, 7, 33, 12, 50, 1, 2, 63}}) {
    // 64 pages reach position 1023 (the neighbour's 900); 128, a wider table than it needs.
    const auto ref = RowLogits(c, n, weights, tokens, 16 * chunk_pages, 0);
    for (const auto& [pages, neighbour] : std::vector<std::pair<int64_t, int64_t>>{{16 * chunk_pages, 300}, {16 * chunk_pages, 900},
                                                                                  {32 * chunk_pages, 0}, {32 * chunk_pages, 900}}) {
      const auto got = RowLogits(c, n, weights, tokens, pages, neighbour);
      ASSERT_EQ(got.size(), ref.size());
      int64_t differ = 0;
      for (size_t i = 0; i < ref.size(); ++i) differ += got[i] != ref[i];
      EXPECT_EQ(differ, 0) << n.Key() << ": " << tokens.size() << " tokens, " << pages << " pages, neighbour at " << neighbour << ": "
                           << differ << " of " << ref.size() << " logits differ";
    }
  }
}

TEST(PagedAttention, RowLogitsDoNotDependOnTheTableOrTheBatch) {
  DFLASH_REQUIRE_PLUGIN();
  ExpectSameLogitsWhateverTheBatchReaches({pjrt::DType::kF32, pjrt::DType::kF32, 2, 64});   // the engine's batch-invariant f32
  ExpectSameLogitsWhateverTheBatchReaches({pjrt::DType::kBF16, pjrt::DType::kBF16, 3, 64});  // and bf16 numerics
}

// PagedAttention against the reference over random caches: rows at different lengths (1 to 4
// chunks), causal and windowed key ranges.
TEST(PagedAttention, MatchesTheWholeRowReference) {
  DFLASH_REQUIRE_PLUGIN();
  constexpr int64_t R = 2, Tq = 4, heads = 4, kvh = 2, hd = 64, S = 16, N = 70, L = 2, layer = 1;
  const Numerics n{pjrt::DType::kF32, pjrt::DType::kF32, 2, 256};
  const int64_t P = TableWidth(1000, S, n.key_chunk_slots), T = P * S;
  std::mt19937 gen(11);
  std::normal_distribution<float> dist;
  auto random = [&](int64_t count) {
    std::vector<float> v(count);
    for (auto& x : v) x = dist(gen);
    return v;
  };
  const auto qv = random(R * Tq * heads * hd), kv = random(L * N * S * kvh * hd), vv = random(L * N * S * kvh * hd);
  std::vector<int32_t> table(R * P, 0);
  for (int64_t j = 0; j < P; ++j) table[j] = static_cast<int32_t>(1 + j % 60), table[P + j] = static_cast<int32_t>(60 - j % 59);
  const std::vector<int32_t> start{700, 9};  // row 0 spans 3 chunks, row 1 one
  for (const int64_t window : {int64_t{0}, int64_t{100}}) {
    hlo::Builder b;
    const hlo::Value q = b.Parameter({R, Tq, heads, hd}, hlo::DType::kF32);
    const hlo::Value kc = b.Parameter({L, N, S, kvh, hd}, hlo::DType::kF32);
    const hlo::Value vc = b.Parameter({L, N, S, kvh, hd}, hlo::DType::kF32);
    const hlo::Value tab = b.Parameter({R, P}, hlo::DType::kS32);
    std::vector<int32_t> pos, lo;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < Tq; ++t) {
        pos.push_back(static_cast<int32_t>(start[r] + t));
        lo.push_back(window ? std::max<int32_t>(0, pos.back() - static_cast<int32_t>(window) + 1) : 0);
      }
    const hlo::Value hi_v = b.ConstS32(pos, {R, Tq}), lo_v = b.ConstS32(lo, {R, Tq});
    const hlo::Value fast = PagedAttention(b, q, kc, vc, layer, tab, KeyRange{lo_v, hi_v}, n);
    const hlo::Value key = b.Iota({R, Tq, T}, hlo::DType::kS32, 2);
    const hlo::Value visible = b.And(b.Compare(key, b.Reshape(lo_v, {R, Tq, 1}), hlo::Cmp::kGE),
                                     b.Compare(key, b.Reshape(hi_v, {R, Tq, 1}), hlo::Cmp::kLE));
    const hlo::Value ref = Attention(b, q, {PagedRead(b, kc, layer, tab)}, PagedRead(b, vc, layer, tab), visible, n);
    auto bq = Upload(qv, {R, Tq, heads, hd}), bk = Upload(kv, {L, N, S, kvh, hd}), bv = Upload(vv, {L, N, S, kvh, hd}),
         bt = Upload(table, {R, P});
    auto out = testing::CompileAndRun(b.Finish({fast, ref}), {bq.get(), bk.get(), bv.get(), bt.get()});
    const auto got = Download<float>(*out[0]), want = Download<float>(*out[1]);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(got[i] - want[i])));
    EXPECT_LT(worst, 1e-5) << "window " << window;
  }
}

TEST(PagedAttention, TablesAreWholeChunks) {
  EXPECT_EQ(KeyChunkSlots(16, 256), 256);
  EXPECT_EQ(KeyChunkSlots(16, 64), 64);
  EXPECT_EQ(KeyChunkSlots(24, 256), 264);
  EXPECT_EQ(KeyChunkSlots(512, 64), 512);
  EXPECT_EQ(KeyChunkSlots(4, 8), 32);  // never under 32 slots
  EXPECT_EQ(TableWidth(1, 16, 256), 16);
  EXPECT_EQ(TableWidth(256, 16, 256), 16);
  EXPECT_EQ(TableWidth(257, 16, 256), 32);
  EXPECT_EQ(TableWidth(65, 16, 64), 8);
  EXPECT_EQ(TableWidth(32768, 16, 64), 2048);
}

}  // namespace
}  // namespace dflash::models
