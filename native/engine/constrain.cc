// Structured output in the scheduler: the grammar of each constrained row before its verify
// (which drafts it keeps, the allowed tokens of every slot) and after it (the committed tokens).
//
// Lossless under speculation. A verify slot j predicts the token after d_1 .. d_j, so its mask is
// the grammar's state after those drafts: M_0 from the committed tokens, then one Consume per
// draft, rolled back afterwards (the matcher ends where it started). The block is cut after the
// first draft the grammar refuses, not before it: that draft stays so the accept rule rejects it
// with certainty (the target's constrained probability of it is 0) and, for sampled rows, draws
// the bonus from the residual of the drafter's distribution, as lossless speculative sampling
// needs; dropping it would bias the sample. Its own slot's mask (after a refused token) is never
// used and stays all ones.
#include <algorithm>
#include <chrono>

#include "engine/scheduler.h"
#include "models/token_mask.h"

namespace dflash::engine {
namespace {

// Adds the host time of a grammar section to the scheduler's counter when it ends.
struct GrammarClock {
  double& total;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~GrammarClock() { total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

}  // namespace

std::vector<Sequence*> Scheduler::Constrain(const std::vector<Sequence*>& rows) {
  std::vector<Sequence*> constrained;
  for (Sequence* s : rows)
    if (s->grammar) constrained.push_back(s);
  if (constrained.empty()) return rows;
  const int64_t W = models::MaskWords(rt_->target().vocab_size);
  local_.grammar_rows += static_cast<int64_t>(constrained.size());
  // M_0 first: it needs no draft, so it is computed while the drafter may still run on the device
  // (the draft pool's transfer below waits for it).
  for (Sequence* s : constrained) {
    GrammarClock clock{local_.grammar_seconds};
    try {
      if (s->grammar->stopped()) {
        Finish(*s, "eos");
        continue;
      }
      s->masks.assign(static_cast<size_t>(W), 0u);
      s->grammar->Mask(s->masks.data());
    } catch (const std::exception& e) {
      Finish(*s, "error", e.what());
    }
  }
  bool any_drafts = false;
  for (Sequence* s : constrained) any_drafts |= s->phase != Sequence::Phase::kDone && s->pending_block > 1;
  std::vector<int32_t> pool;
  int64_t width = 0;
  if (any_drafts) {
    try {
      pool = rt_->DraftPoolToHost(&width);
    } catch (const std::exception& e) {
      FailAll(constrained, e.what());
    }
  }
  for (Sequence* s : constrained) {
    if (s->phase == Sequence::Phase::kDone || s->pending_block <= 1) continue;
    GrammarClock clock{local_.grammar_seconds};
    try {
      // draft_pool[slot] = [last, d_1 .. d_{b-1}]
      const int32_t* drafts = pool.data() + static_cast<int64_t>(s->slot) * width + 1;
      const int32_t offered = s->pending_block - 1;
      const int32_t valid = s->grammar->Valid(drafts, static_cast<size_t>(offered));
      const int32_t keep = std::min(offered, valid + 1);  // the valid drafts and the first refused one
      s->pending_block = keep + 1;
      s->masks.resize(static_cast<size_t>((keep + 1) * W), ~0u);
      const int32_t masked = std::min(keep, valid);  // slots 1 .. masked follow valid drafts
      for (int32_t j = 1; j <= masked; ++j) {
        s->grammar->Consume(drafts + j - 1, 1);
        s->grammar->Mask(s->masks.data() + j * W);
      }
      s->grammar->Rollback(static_cast<size_t>(masked));
    } catch (const std::exception& e) {
      Finish(*s, "error", e.what());
    }
  }
  std::vector<Sequence*> live;
  for (Sequence* s : rows)
    if (s->phase != Sequence::Phase::kDone) live.push_back(s);
  return live;
}

std::string Scheduler::CommitGrammar(Sequence& s, const std::vector<int32_t>& tokens, std::string& finish) {
  if (!s.grammar) return "";
  GrammarClock clock{local_.grammar_seconds};
  try {
    s.grammar->Consume(tokens.data(), tokens.size());
    // Complete: the grammar allows nothing but the end, which needs no step of its own.
    if (finish.empty() && s.grammar->stopped()) finish = "eos";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace dflash::engine
