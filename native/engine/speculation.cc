// Adaptive speculation: see speculation.h.
#include "engine/speculation.h"

#include <algorithm>
#include <cmath>

namespace dflash::engine {

AcceptanceStats::AcceptanceStats(int32_t max_block) : offered_(std::max(1, max_block), 0), accepted_(std::max(1, max_block), 0) {}

void AcceptanceStats::Record(int32_t proposed, int32_t accepted) {
  // Position i was "offered" when the i-1 before it were accepted and i was in the block.
  for (int32_t i = 1; i <= proposed && i < max_block(); ++i) {
    ++offered_[i];
    if (i <= accepted) ++accepted_[i];
    else break;
  }
}

std::vector<double> AcceptanceStats::Conditional(const AcceptanceStats* prior) const {
  std::vector<double> a(offered_.size(), 0.0);
  for (size_t i = 1; i < a.size(); ++i) {
    // Beta prior: the engine-wide rate with the weight of 4 observations; where the engine has
    // never offered position i, the estimate of position i-1 (0.5 for i = 1) with the weight of 2.
    double pn = 0, pa = 0;
    if (prior && prior != this && i < prior->offered_.size() && prior->offered_[i] > 0) {
      pn = 4.0;
      pa = 4.0 * static_cast<double>(prior->accepted_[i]) / static_cast<double>(prior->offered_[i]);
    } else {
      pn = 2.0;
      pa = 2.0 * (i == 1 ? 0.5 : a[i - 1]);
    }
    a[i] = (static_cast<double>(accepted_[i]) + pa) / (static_cast<double>(offered_[i]) + pn);
  }
  return a;
}

double ExpectedTokens(const std::vector<double>& alpha, int32_t k) {
  double e = 1.0, run = 1.0;
  for (int32_t i = 1; i < k && i < static_cast<int32_t>(alpha.size()); ++i) {
    run *= alpha[i];
    e += run;
  }
  return e;
}

BlockPolicy::BlockPolicy(int32_t max_block, bool adaptive)
    : max_block_(std::max(1, max_block)), adaptive_(adaptive), global_(std::max(1, max_block)) {
  candidates_.push_back(1);
  for (int32_t k = 2; k < max_block_; k *= 2) candidates_.push_back(k);
  if (max_block_ > 1) candidates_.push_back(max_block_);
}

void BlockPolicy::RecordCost(Stage stage, int64_t rows, int32_t block, double seconds) {
  Observed& m = (stage == Stage::kVerify ? verify_ : draft_)[{rows, block}];
  // The first run is a warm-up: the second replaces it; then an EMA follows load changes and
  // damps noise.
  m.seconds = ++m.runs <= 2 ? seconds : 0.8 * m.seconds + 0.2 * seconds;
}

double BlockPolicy::Interpolate(const CostTable& t, int64_t rows, int32_t block, bool zero_at_one) {
  auto exact = t.find({rows, block});
  if (exact != t.end()) return exact->second.seconds;
  // Nearest measured blocks below and above at this rows bucket: interpolate linearly in K.
  bool has_lo = zero_at_one && block > 1, has_hi = false;
  std::pair<int32_t, double> lo{1, 0.0}, hi;
  for (const auto& [key, c] : t) {
    if (key.first != rows) continue;
    if (key.second < block && (!has_lo || key.second > lo.first)) lo = {key.second, c.seconds}, has_lo = true;
    if (key.second > block && (!has_hi || key.second < hi.first)) hi = {key.second, c.seconds}, has_hi = true;
  }
  if (has_lo && has_hi) return lo.second + (hi.second - lo.second) * (block - lo.first) / double(hi.first - lo.first);
  if (has_lo) return lo.second;  // K-flat beyond the largest measured block
  if (has_hi) return hi.second;
  return 0.0;                    // nothing measured at this bucket: flat (and free)
}

double BlockPolicy::Cost(int64_t rows, int32_t block) const {
  // A block of 1 runs no drafter; between 1 and the measured blocks the draft cost interpolates
  // from 0.
  if (block <= 1) return Interpolate(verify_, rows, 1);
  return Interpolate(verify_, rows, block) + Interpolate(draft_, rows, block, true);
}

bool BlockPolicy::Measured(int64_t rows, int32_t block) const { return verify_.count({rows, block}) > 0; }

int32_t BlockPolicy::Choose(int64_t rows, const std::vector<int32_t>& caps, const std::vector<const AcceptanceStats*>& stats) {
  return Choose(rows, caps, stats, [](int32_t) { return true; }, [](int32_t) {});
}

int32_t BlockPolicy::Choose(int64_t rows, const std::vector<int32_t>& caps, const std::vector<const AcceptanceStats*>& stats,
                            const std::function<bool(int32_t)>& ready, const std::function<void(int32_t)>& want) {
  int32_t cap = 1;
  for (int32_t c : caps) cap = std::max(cap, std::min(c, max_block_));
  // The preferred block, then the best ready one when it is not ready (or nothing, if even the
  // fallback is not: then the preferred one is compiled in the foreground).
  auto settle = [&](int32_t preferred, const std::vector<std::pair<double, int32_t>>& ranked) {
    if (ready(preferred)) return preferred;
    want(preferred);
    for (const auto& [rate, k] : ranked)
      if (ready(k)) return k;
    return preferred;
  };
  if (!adaptive_ || cap == 1) return cap;
  // Measure both ends once per rows bucket before trusting the model.
  if (!Measured(rows, 1)) return settle(1, {{0, cap}});
  if (!Measured(rows, cap)) return settle(cap, {{0, 1}});
  std::vector<std::vector<double>> alphas;
  for (const AcceptanceStats* s : stats) alphas.push_back(s->Conditional(&global_));
  std::vector<std::pair<double, int32_t>> ranked;  // (expected tokens per second, block), best first
  for (int32_t k : candidates_) {
    if (k > cap) break;
    double tokens = 0;
    for (size_t r = 0; r < alphas.size(); ++r) tokens += ExpectedTokens(alphas[r], std::min(k, caps[r]));
    ranked.emplace_back(tokens / std::max(1e-9, Cost(rows, k)), k);
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });  // ties: smaller block
  int32_t best = settle(ranked.front().second, ranked);
  if (best == 1 && cap > 1) {
    // Plain decoding learns nothing about acceptance: re-try the block now and then. A re-try
    // costs every row of the batch a full block (and a context catch-up), while an iteration
    // yields one acceptance sample per row: so the interval grows with the rows.
    if (++plain_streak_ >= explore_every_ * std::max<int64_t>(1, rows) && ready(cap)) {
      plain_streak_ = 0;
      explore_every_ = std::min<int64_t>(explore_every_ * 2, 256);
      return cap;
    }
  } else {
    plain_streak_ = 0;
  }
  return best;
}

}  // namespace dflash::engine
