// Engine microbenchmarks: time the verify (target score) and draft programs in isolation, at
// shapes a caller picks, on scratch state (a temporary sequence whose pages are freed after).
#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "engine/engine.h"
#include "engine/sequence.h"

namespace dflash::engine {
namespace {
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
}  // namespace

double Engine::TimeVerify(int32_t k, int32_t context, int32_t reps) {
  std::lock_guard<std::mutex> lock(mu_);
  RequireWeights(false);
  if (k < 1 || context < 0 || reps < 1) throw std::invalid_argument("timeVerify: k >= 1, context >= 0, reps >= 1");
  Sequence s;
  std::vector<int32_t> tokens(k), positions(k);
  for (int32_t i = 0; i < k; ++i) {
    tokens[i] = (i * 7 + 3) % static_cast<int32_t>(target_.vocab_size);
    positions[i] = context + i;
  }
  std::vector<double> times;
  try {
    auto tok = Upload(tokens, {1, k});
    for (int32_t r = 0; r < reps + 1; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      auto out = ScoreOne(s, tok.get(), positions, k, /*argmax=*/false, /*hidden=*/drafter_.has_value(), /*accept=*/true);
      if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  } catch (...) {
    pages_.Release(s.block_table);
    throw;
  }
  pages_.Release(s.block_table);
  return Median(times);
}

double Engine::TimeDraft(int32_t block, int32_t context, int32_t reps) {
  if (!drafter_) throw std::invalid_argument("timeDraft: the engine has no drafter");
  std::lock_guard<std::mutex> lock(mu_);
  RequireWeights(true);
  if (block < 2 || context < 0 || reps < 1) throw std::invalid_argument("timeDraft: block >= 2, context >= 0, reps >= 1");
  Sequence s;
  s.block = block;
  s.ctx_capacity = static_cast<int32_t>(NextPow2(context + 2 * block));
  const std::vector<int64_t> dims = {drafter_->num_layers, s.ctx_capacity, drafter_->num_kv_heads, drafter_->head_dim};
  std::vector<float> zeros(static_cast<size_t>(drafter_->num_layers) * s.ctx_capacity * drafter_->num_kv_heads * drafter_->head_dim, 0.f);
  s.ctx_k = client_->BufferFromHost(zeros.data(), pjrt::DType::kF32, dims);
  s.ctx_v = client_->BufferFromHost(zeros.data(), pjrt::DType::kF32, dims);
  const int64_t width = static_cast<int64_t>(drafter_->target_layer_ids.size()) * target_.hidden_size;
  std::vector<float> f(static_cast<size_t>(block * width), 0.01f);
  auto feats = client_->BufferFromHost(f.data(), pjrt::DType::kF32, {1, block, width});
  std::vector<int32_t> acc(block + 1, 0);
  acc[0] = 1;
  auto accept = Upload(acc, {1, block + 1});
  std::vector<double> times;
  for (int32_t r = 0; r < reps + 1; ++r) {
    s.ctx_len = context;  // same context length every repetition
    const auto t0 = std::chrono::steady_clock::now();
    Draft(s, *feats, *accept, block, 1);
    if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return Median(times);
}

}  // namespace dflash::engine
