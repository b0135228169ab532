// Host-side state of one sequence in the scheduler. Invariant while decoding:
//   kv_len == tokens.size() - 1
// — every known token but the last has its K/V (and, with a drafter, its context row) in the
// pages; the last one is scored by the next verify. Prefill therefore covers the prompt but its
// last token, and a sequence's first decode step is a plain one ([last] at position kv_len) whose
// hidden features start the drafter's context; from then on the drafter leaves a block for the
// next verify in the draft pool row `slot`. While adaptive speculation decodes plainly the
// drafter is not run at all (ctx_len falls behind kv_len); before its next block it catches up.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/options.h"
#include "grammar/grammar.h"
#include "engine/speculation.h"

namespace dflash::engine {

// Log-probabilities of a run of tokens (models/logprobs.h), `top` alternatives each.
struct TokenLogprobs {
  int32_t top = 0;
  std::vector<float> logprob;       // one per token
  std::vector<int32_t> top_ids;     // top per token
  std::vector<float> top_logprobs;  // top per token
  size_t size() const { return logprob.size(); }
  void Truncate(size_t n) {
    if (n >= logprob.size()) return;
    logprob.resize(n), top_ids.resize(n * top), top_logprobs.resize(n * top);
  }
  void Append(const TokenLogprobs& o) {
    logprob.insert(logprob.end(), o.logprob.begin(), o.logprob.end());
    top_ids.insert(top_ids.end(), o.top_ids.begin(), o.top_ids.end());
    top_logprobs.insert(top_logprobs.end(), o.top_logprobs.begin(), o.top_logprobs.end());
  }
};

struct Sequence {
  enum class Phase { kQueued, kPrefill, kDecode, kDone };

  int64_t id = 0;
  RequestOptions opts;
  int32_t block_cap = 1;            // largest block this sequence may verify (1 = plain decoding)
  bool sampling = false;            // temperature > 0
  std::vector<int32_t> tokens;      // prompt, then every generated token
  int64_t prompt_len = 0;
  int64_t generated = 0;            // tokens reported to the caller
  int64_t kv_len = 0;               // positions whose K/V are in the pages
  int64_t ctx_len = 0;              // positions with a drafter context row (<= kv_len: plain steps skip it)
  Phase phase = Phase::kQueued;
  std::vector<int32_t> pages;       // block table, in position order
  int32_t slot = -1;                // row of the draft pool (and of per-row device state)
  int32_t pending_block = 0;        // > 0: draft_pool[slot] holds [last, d1 ..] of this size
  uint64_t seed = 0;                // sampling: every uniform is keyed by (seed, position, purpose)
  int64_t admitted_at = 0;          // admission order (preemption takes the newest first)
  int64_t preemptions = 0;
  AcceptanceStats acceptance;
  // Prefix caching (engine/page_allocator.h): chained hashes of its full pages of known tokens,
  // how many of its leading pages were offered to the prefix index (registered, shared, or
  // duplicates kept private) and marked as holding drafter context rows, the hashes its prefill
  // promised to register (others wait for them rather than compute them again), and the prompt
  // tokens its first admission found cached (-1 before it).
  std::vector<uint64_t> page_hashes;
  int32_t registered_pages = 0;
  int32_t context_pages = 0;
  std::vector<uint64_t> promised;
  int64_t cached_tokens = -1;
  // Log-probabilities: of the tokens the last verify committed (opts.logprobs >= 0), and of
  // prompt tokens computed by prefills since the last event (opts.prompt_logprobs >= 0), from
  // position prompt_lp_reported on; prompt_lp_next is the next prompt position still to compute.
  TokenLogprobs step_logprobs, prompt_logprobs;
  int64_t prompt_lp_next = 1, prompt_lp_reported = 1;
  // Structured output (grammar/grammar.h): the matcher holds the state after the committed
  // tokens; masks are the next verify's allowed tokens, one packed mask per slot of its block.
  std::unique_ptr<grammar::Matcher> grammar;
  std::vector<uint32_t> masks;
  bool wants_prompt_logprobs() const { return opts.prompt_logprobs >= 0 && prompt_lp_next < prompt_len; }

  bool speculative() const { return block_cap > 1; }
  int32_t last() const { return tokens.back(); }
};

// What the scheduler reports to the caller after an iteration, one per sequence that changed.
struct SequenceEvent {
  int64_t id = 0;
  std::vector<int32_t> tokens;   // committed this iteration, in order (EOS excluded)
  int32_t drafted = 0;           // of `tokens`, how many were drafted and accepted
  int32_t proposed = 0;          // drafts offered in this step (block - 1; 0 for a plain step)
  int32_t block = 0;             // tokens verified in this step (1 = plain)
  std::string finish;            // "" while running; "eos" | "maxTokens" | "abort" | "error"
  std::string error;             // the message when finish == "error"
  double iteration_seconds = 0;  // device time of the iteration the step ran in (shared by its rows)
  int64_t cached_tokens = -1;    // prompt tokens the prefix cache held at admission (-1: not admitted yet)
  TokenLogprobs logprobs;        // of `tokens` (when the request asked for them)
  TokenLogprobs prompt_logprobs; // of prompt tokens prompt_logprobs_from, from + 1, ...
  int64_t prompt_logprobs_from = 0;
};

}  // namespace dflash::engine
