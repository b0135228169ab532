// Adaptive speculation: which block size an iteration verifies. A larger block costs more
// verify and draft time and yields more tokens only as far as the drafter's proposals hold, so
// the policy keeps
//   - per-position acceptance: of the steps that offered draft position i with positions
//     1..i-1 accepted, how many accepted i (per sequence, with the engine-wide counts as prior;
//     a position nobody has reached yet takes the estimate of the position before it, since
//     drafts that held to i-1 tend to hold on);
//   - the measured cost of an iteration at each (batch-rows bucket, block) it has run;
// and picks the block K (1 = plain decoding) maximising  sum over rows of E[tokens | K] / cost(K),
// E[tokens | K] = 1 + sum_{i<K} prod_{j<=i} alpha_j, cost(K) = verify(K) + draft(K). Plain
// decoding and the full block are each run once per rows bucket to measure them; other costs
// are interpolated linearly in K between measured blocks (K-flat beyond the measured range), so
// an unexplored block gets tried when the model believes in it. When plain decoding wins
// for long, the full block is re-tried now and then (every 8, 16, ... 256 iterations, times the
// rows bucket: a re-try costs every row a block) to keep the acceptance estimates honest. The output never depends on the choice (lossless either way).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

namespace dflash::engine {

class AcceptanceStats {
 public:
  explicit AcceptanceStats(int32_t max_block = 16);
  // One verify step that offered `proposed` drafts of which the first `accepted` were accepted.
  void Record(int32_t proposed, int32_t accepted);
  // alpha_i for positions i = 1 .. max_block-1: P(accept i | 1..i-1 accepted), blended with `prior`.
  std::vector<double> Conditional(const AcceptanceStats* prior) const;
  int64_t offered(int32_t i) const { return offered_[i]; }
  int64_t accepted(int32_t i) const { return accepted_[i]; }
  int32_t max_block() const { return static_cast<int32_t>(offered_.size()); }

 private:
  std::vector<int64_t> offered_, accepted_;  // index i = draft position (0 unused)
};

// E[tokens per step] of a block of k with conditional acceptances alpha (alpha[i], i >= 1).
double ExpectedTokens(const std::vector<double>& alpha, int32_t k);

class BlockPolicy {
 public:
  BlockPolicy(int32_t max_block, bool adaptive);

  // The block for the next iteration over rows whose blocks are capped at caps[r] (>= 1) with
  // acceptance stats stats[r]; rows_bucket is the batch bucket the iteration will run at.
  int32_t Choose(int64_t rows_bucket, const std::vector<int32_t>& caps, const std::vector<const AcceptanceStats*>& stats);
  // The same, among the blocks whose programs are ready; a better block that is not ready is
  // handed to `want` (compiled in the background) and the best ready one is used meanwhile.
  int32_t Choose(int64_t rows_bucket, const std::vector<int32_t>& caps, const std::vector<const AcceptanceStats*>& stats,
                 const std::function<bool(int32_t)>& ready, const std::function<void(int32_t)>& want);
  // Seconds a verify (with its host transfer) or a draft took at (rows_bucket, block). A block of
  // 1 runs no drafter: its draft cost is 0. A context catch-up after plain steps is a one-off
  // switching cost, not a per-step one: callers leave it out. The first run of a program is a
  // warm-up (page faults, the plugin packing its kernels): the second replaces it outright.
  enum class Stage { kVerify, kDraft };
  void RecordCost(Stage stage, int64_t rows_bucket, int32_t block, double seconds);
  // The cost of one iteration at (rows_bucket, block) the model uses: verify + draft, each
  // measured, interpolated or flat.
  double Cost(int64_t rows_bucket, int32_t block) const;
  bool Measured(int64_t rows_bucket, int32_t block) const;
  AcceptanceStats& global() { return global_; }
  const std::vector<int32_t>& candidates() const { return candidates_; }
  bool adaptive() const { return adaptive_; }

 private:
  int32_t max_block_;
  bool adaptive_;
  std::vector<int32_t> candidates_;                        // 1, powers of two, max_block
  struct Observed { double seconds = 0; int64_t runs = 0; };          // EMA seconds, runs recorded
  using CostTable = std::map<std::pair<int64_t, int32_t>, Observed>;  // by (rows bucket, block)
  // The cost at `block` from the measured blocks around it; `zero_at_one`: a block of 1 counts as
  // measured at 0 s (the draft stage: plain steps run no drafter).
  static double Interpolate(const CostTable& t, int64_t rows, int32_t block, bool zero_at_one = false);
  CostTable verify_, draft_;
  AcceptanceStats global_;
  int64_t plain_streak_ = 0, explore_every_ = 8;
};

}  // namespace dflash::engine
