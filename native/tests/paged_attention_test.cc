// Batch invariance across pages buckets: a row's logits must be bit-for-bit the same whatever
// pages bucket P its program has (the engine picks P from the longest row of a batch, so a short
// sequence runs in a larger bucket beside a long one; the extra table entries are the trash page
// and masked). The attention dots are at the code-pair / Qwen3 head shapes (hd 64, 2 kv heads),
// where XLA:CPU's kernels change with the number of key slots (bench/PROFILE.md).
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "hlo_test_runtime.h"
#include "models/layers.h"
#include "models/paged.h"
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

// Logits (K x V) of one row of `tokens` at positions 0.. in page 1 (a fresh cache), run by a
// score program with `pages` table entries per row.
std::vector<float> RowLogits(const TargetConfig& c, const Numerics& n, const std::map<std::string, BufPtr>& weights,
                             const std::vector<int32_t>& tokens, int64_t pages) {
  ScoreShape s;
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
  std::vector<int32_t> positions(tokens.size()), table(pages, 0);
  for (size_t i = 0; i < tokens.size(); ++i) positions[i] = static_cast<int32_t>(i);
  table[0] = 1;
  auto tok = Upload(tokens, {1, s.tokens});
  auto pos = Upload(positions, {1, s.tokens});
  auto tab = Upload(table, {1, pages});
  std::map<std::string, pjrt::Buffer*> named{{"k_cache", kc.get()}, {"v_cache", vc.get()}, {"tokens", tok.get()},
                                             {"positions", pos.get()}, {"block_table", tab.get()}};
  for (const auto& [k, v] : weights) named[k] = v.get();
  std::vector<pjrt::Buffer*> args;
  for (const auto& in : p.inputs) args.push_back(named.at(in.name));
  auto out = testing::CompileAndRun(p.mlir, args);
  return Download<float>(*out.at(p.output_index("logits")));
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

// Every bucket the engine uses up to 1024 slots, against the smallest.
void ExpectSameLogitsInEveryBucket(const Numerics& n) {
  const TargetConfig c = HeadShaped();
  const auto weights = RandomWeights(c, n.dtype);
  std::vector<int64_t> buckets;
  for (int64_t pages = 1; pages <= 64; ++pages)
    if (buckets.empty() || PagesBucket(pages, kPageSize) != buckets.back()) buckets.push_back(PagesBucket(pages, kPageSize));
  ASSERT_GE(buckets.size(), 8u);
  // Plain decode (1 token), a verify-sized block (16): the rows the program runs per kv head differ.
  for (const std::vector<int32_t>& tokens :
       {std::vector<int32_t>{5}, std::vector<int32_t>{5, 17, 3, 60, 42, 9, 61, 0, 7, 7, 33, 12, 50, 1, 2, 63}}) {
    const auto ref = RowLogits(c, n, weights, tokens, buckets.front());
    for (int64_t pages : buckets) {
      const auto got = RowLogits(c, n, weights, tokens, pages);
      ASSERT_EQ(got.size(), ref.size());
      int64_t differ = 0;
      for (size_t i = 0; i < ref.size(); ++i) differ += got[i] != ref[i];
      EXPECT_EQ(differ, 0) << n.Key() << ": " << tokens.size() << " tokens, " << pages << " pages of " << kPageSize << " vs "
                           << buckets.front() << ": " << differ << " of " << ref.size() << " logits differ";
    }
  }
}

TEST(PagesBucket, RowLogitsDoNotDependOnThePagesBucket) {
  DFLASH_REQUIRE_PLUGIN();
  ExpectSameLogitsInEveryBucket({pjrt::DType::kF32, pjrt::DType::kF32, 2});   // the engine's batch-invariant f32
  ExpectSameLogitsInEveryBucket({pjrt::DType::kBF16, pjrt::DType::kBF16, 3});  // and bf16 numerics
}

TEST(PagesBucket, LadderReadsAtMostOneAndAHalfTimesTheSlotsInUseInWholeScoreChunks) {
  EXPECT_EQ(PagesBucket(1, 16), 4);  // kMinBucketSlots
  EXPECT_EQ(PagesBucket(5, 16), 6);
  EXPECT_EQ(PagesBucket(7, 16), 8);
  EXPECT_EQ(PagesBucket(9, 16), 12);
  EXPECT_EQ(PagesBucket(17, 16), 32);  // 24 pages = 384 slots: not whole score chunks
  EXPECT_EQ(PagesBucket(33, 16), 48);
  EXPECT_EQ(PagesBucket(129, 16), 192);
  EXPECT_EQ(PagesBucket(1, 128), 1);
  for (int64_t pages = 1; pages < 5000; ++pages) {
    const int64_t p = PagesBucket(pages, 16);
    EXPECT_GE(p, pages);
    if (pages > 4 && (pages < 17 || pages > 32)) EXPECT_LE(2 * p, 3 * pages) << pages;
    if (p * 16 > kScoreChunk) EXPECT_EQ(p * 16 % kScoreChunk, 0) << pages;
  }
}

}  // namespace
}  // namespace dflash::models
