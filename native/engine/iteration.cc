// One scheduler iteration: admission, page planning (with preemption), prefill chunks, the
// batched verify and the batched draft. See scheduler.h for the policy.
#include <algorithm>
#include <chrono>
#include <set>

#include "engine/page_allocator.h"
#include "engine/scheduler.h"

namespace dflash::engine {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void Scheduler::Admit() {
  auto& pages = rt_->pool().pages();
  const int32_t page_size = rt_->options().page_size;
  while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < rt_->options().max_sequences && !free_slots_.empty()) {
    Sequence& s = *waiting_.front();
    // The pages its known tokens start with that are cached (prefix caching); it waits while a
    // running prefill is about to register its next one (FIFO: then everybody behind it waits).
    const std::vector<int32_t> cached = CachedPrefix(s);
    if (WaitsForPromised(s, cached.size())) break;
    int32_t evictable = 0;  // cached pages nobody uses count as free until it shares them
    for (int32_t p : cached) evictable += pages.users(p) == 0;
    // Pages for every known token and one block, with one page of headroom per running
    // sequence (their next blocks), so an admission does not immediately force a preemption.
    const int64_t need = PageAllocator::PagesFor(static_cast<int64_t>(s.tokens.size()) + s.block_cap, page_size) -
                         static_cast<int64_t>(cached.size());
    if (need + static_cast<int64_t>(running_.size()) > pages.free_pages() - evictable) break;  // FIFO: nobody overtakes
    s.slot = free_slots_.back();
    free_slots_.pop_back();
    s.admitted_at = ++admissions_;
    s.kv_len = 0;
    s.ctx_len = 0;
    s.pending_block = 0;
    ShareCachedPrefix(s, cached);
    s.phase = s.kv_len < static_cast<int64_t>(s.tokens.size()) - 1 ? Sequence::Phase::kPrefill : Sequence::Phase::kDecode;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    --queued_;
  }
}

void Scheduler::Preempt(Sequence& s) {
  rt_->pool().pages().Release(s.pages);  // its registered pages stay cached: it finds them when admitted again
  Unpromise(s);
  s.registered_pages = 0;
  s.context_pages = 0;
  if (s.slot >= 0) free_slots_.push_back(s.slot);
  s.slot = -1;
  s.kv_len = 0;
  s.ctx_len = 0;
  s.pending_block = 0;
  s.phase = Sequence::Phase::kQueued;
  ++s.preemptions;
  ++local_.preemptions;
}

bool Scheduler::Reserve(Sequence& s, int64_t upto, const std::set<const Sequence*>& planned) {
  auto& pages = rt_->pool().pages();
  const int32_t need = PageAllocator::PagesFor(upto, rt_->options().page_size);
  while (need - static_cast<int32_t>(s.pages.size()) > pages.free_pages()) {
    // The newest running sequence not already part of this iteration gives its pages back.
    Sequence* victim = nullptr;
    for (auto& r : running_)
      if (r.get() != &s && r->phase != Sequence::Phase::kDone && r->phase != Sequence::Phase::kQueued && !planned.count(r.get()) &&
          (!victim || r->admitted_at > victim->admitted_at))
        victim = r.get();
    if (!victim || victim->admitted_at < s.admitted_at) victim = &s;
    Preempt(*victim);
    if (victim == &s) return false;
  }
  pages.GrowTo(s.pages, need);
  return true;
}

void Scheduler::Iterate() {
  Admit();
  // Plan pages oldest first: decoding sequences (their next block), then prefill chunks under
  // the token budget. Preemption only takes sequences not yet planned.
  std::set<const Sequence*> planned;
  std::vector<Sequence*> decode;
  std::vector<std::pair<Sequence*, int32_t>> prefill;
  for (auto& s : running_) {
    if (s->phase != Sequence::Phase::kDecode) continue;
    if (Reserve(*s, s->kv_len + std::max(1, s->pending_block), planned)) {
      planned.insert(s.get());
      decode.push_back(s.get());
    }
  }
  int64_t budget = rt_->options().prefill_budget;
  for (auto& s : running_) {
    if (s->phase != Sequence::Phase::kPrefill || budget <= 0) continue;
    const int64_t remaining = static_cast<int64_t>(s->tokens.size()) - 1 - s->kv_len;
    int32_t len = static_cast<int32_t>(std::min<int64_t>({remaining, rt_->options().prefill_chunk, budget}));
    if (rt_->target().hybrid() || snapshots()) {
      // A hybrid target's chunks end on snapshot points (multiples of the recurrence's chunk)
      // where they can (the rest next iteration): a cached prompt has its state there, and every
      // split of a prompt computes the same chunks (models/gated_delta.h, kDeltaChunk).
      const int64_t every = snapshot_interval(), aligned = (s->kv_len + len) / every * every;
      if (aligned > s->kv_len) len = static_cast<int32_t>(aligned - s->kv_len);
    }
    if (Reserve(*s, s->kv_len + len, planned)) {
      planned.insert(s.get());
      prefill.emplace_back(s.get(), len);
      budget -= len;
    }
  }
  // Preempted sequences go back to the front of the queue, oldest first.
  std::vector<std::unique_ptr<Sequence>> back;
  for (auto& s : running_)
    if (s->phase == Sequence::Phase::kQueued) back.push_back(std::move(s));
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
  std::sort(back.begin(), back.end(), [](const auto& a, const auto& b) { return a->admitted_at > b->admitted_at; });
  for (auto& s : back) {
    waiting_.push_front(std::move(s));
    ++queued_;
  }
  // Rows preempted after being planned cannot happen (see Reserve), but decode rows whose
  // sequence was preempted while planning prefill are not in `decode` anyway.

  ++local_.iterations;
  for (auto& [s, len] : prefill) {
    try {
      for (int32_t done = 0; done < len;) {
        const int32_t n = rt_->Prefill(*s, s->kv_len, len - done);
        s->kv_len += n;
        done += n;
        ++local_.prefill_calls;
        if (done == len) SnapshotState(*s);  // a chunk that ends on a snapshot point
      }
      s->ctx_len = s->kv_len;
      RegisterFullPages(*s);
      if (s->prompt_logprobs.size() > 0 && s->kv_len == static_cast<int64_t>(s->tokens.size()) - 1) TakePromptLogprobs(*s, EventOf(*s));
      if (s->kv_len == static_cast<int64_t>(s->tokens.size()) - 1) s->phase = Sequence::Phase::kDecode;
    } catch (const std::exception& e) {
      FailAll({s}, e.what());
    }
  }
  if (!decode.empty()) RunDecode(decode);
}

void Scheduler::RunDecode(const std::vector<Sequence*>& planned) {
  // The step's block is the one the policy chose (the drafted blocks), even when grammars cut
  // some rows' drafts (their slots past the cut are padding): the verify keeps the shapes the
  // policy and precompile know, rather than one per cut length.
  int32_t k = 1;
  for (Sequence* s : planned) k = std::max(k, std::max(1, s->pending_block));
  const std::vector<Sequence*> rows = Constrain(planned);
  if (rows.empty()) return;
  const int64_t bucket = NextPow2(static_cast<int64_t>(rows.size()));
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> committed;
  try {
    committed = rt_->Verify(rows, k);
  } catch (const std::exception& e) {
    FailAll(rows, e.what());
    return;
  }
  const double verify_seconds = Since(t0);
  policy_.RecordCost(BlockPolicy::Stage::kVerify, bucket, k, verify_seconds);
  ++local_.decode_iterations;
  local_.last_block = k;
  local_.verify_rows += static_cast<int64_t>(rows.size());

  // Commit: EOS and maxTokens end a sequence inside its step; later tokens are dropped.
  std::vector<int32_t> n(rows.size(), 0);
  std::vector<bool> continues(rows.size(), false);
  const auto& eos = eos_ids_;
  for (size_t r = 0; r < rows.size(); ++r) {
    Sequence& s = *rows[r];
    const int32_t block = std::max(1, s.pending_block);
    const auto& toks = committed[r];
    n[r] = static_cast<int32_t>(toks.size());
    const int32_t drafted = s.pending_block > 0 ? n[r] - 1 : 0;
    if (s.pending_block > 0) {
      s.acceptance.Record(block - 1, drafted);
      policy_.global().Record(block - 1, drafted);
    }
    SequenceEvent ev;
    ev.id = s.id;
    ev.cached_tokens = s.cached_tokens;
    ev.block = block;
    ev.proposed = s.pending_block > 0 ? block - 1 : 0;
    std::string finish;
    for (int32_t t : toks) {
      if (eos.count(t)) {
        finish = "eos";
        break;
      }
      ev.tokens.push_back(t);
      if (s.generated + static_cast<int64_t>(ev.tokens.size()) >= s.opts.max_tokens) {
        finish = "maxTokens";
        break;
      }
    }
    ev.drafted = std::min<int32_t>(drafted, static_cast<int32_t>(ev.tokens.size()));
    if (s.opts.logprobs >= 0) {
      ev.logprobs = std::move(s.step_logprobs);
      ev.logprobs.Truncate(ev.tokens.size());  // not past EOS / maxTokens
    }
    TakePromptLogprobs(s, ev);
    ev.iteration_seconds = verify_seconds;
    const std::string grammar_error = CommitGrammar(s, ev.tokens, finish);
    s.generated += static_cast<int64_t>(ev.tokens.size());
    local_.tokens += static_cast<int64_t>(ev.tokens.size());
    event_index_[s.id] = events_.size();
    events_.push_back(std::move(ev));
    if (!grammar_error.empty()) Finish(s, "error", grammar_error);
    else if (!finish.empty()) Finish(s, finish);
    else continues[r] = true;
  }

  // The next block: chosen for the rows that go on speculating, drafted now.
  std::vector<int32_t> caps;
  std::vector<const AcceptanceStats*> stats;
  bool any_spec = false;
  for (size_t r = 0; r < rows.size(); ++r)
    if (continues[r] && rows[r]->speculative()) {
      caps.push_back(rows[r]->block_cap);
      stats.push_back(&rows[r]->acceptance);
      any_spec = true;
    }
  int32_t next = 1;
  if (any_spec) {
    // A block is "ready" when this iteration's draft at it and the next verify at it are both
    // compiled; a better one that is not gets compiled in the background meanwhile.
    int64_t max_pos = 0, live = 0, logprobs = -1;
    bool any_sampling = false;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (!continues[r]) continue;
      ++live;
      max_pos = std::max<int64_t>(max_pos, rows[r]->kv_len + n[r]);
      any_sampling |= rows[r]->sampling;
      logprobs = std::max<int64_t>(logprobs, rows[r]->opts.logprobs);
    }
    // (A block of 1 runs no drafter: only its verify has to be ready.)
    auto draft_shape = [&](int32_t b) { return rt_->DraftShapeFor(static_cast<int64_t>(rows.size()), k, b, max_pos); };
    auto verify_shape = [&](int32_t b) { return rt_->VerifyShape(live, b, max_pos + b, logprobs); };
    next = policy_.Choose(
        bucket, caps, stats,
        [&](int32_t b) { return rt_->Ready(verify_shape(b)) && (b == 1 || rt_->Ready(draft_shape(b))); },
        [&](int32_t b) {
          rt_->Prefetch(verify_shape(b));
          if (b > 1) rt_->Prefetch(draft_shape(b));
        });
    for (Sequence* s : rows) s->pending_block = 0;  // consumed by this verify; Draft sets the next
    Anticipate(live, next, max_pos + next, logprobs);
    if (next >= 2) Draft(rows, committed, n, continues, next, k);
    // next == 1: plain steps run no drafter; the context catches up before the next block.
  }
  // The verify's hidden features serve only the draft that follows it: without one (plain next
  // block, or no row goes on speculating) they are released now, not held until the next draft.
  if (next < 2) rt_->DropFeatures();
  for (size_t r = 0; r < rows.size(); ++r) {
    Sequence& s = *rows[r];
    if (s.phase == Sequence::Phase::kDone) continue;
    if (!s.speculative()) s.pending_block = 0;
    s.tokens.insert(s.tokens.end(), committed[r].begin(), committed[r].end());
    s.kv_len += n[r];
    // Pages past the committed tokens return to the pool; the next verify grows them again.
    rt_->pool().pages().ShrinkTo(s.pages, PageAllocator::PagesFor(s.kv_len, rt_->options().page_size));
    RegisterFullPages(s);
    SnapshotState(s);
  }
}

}  // namespace dflash::engine

namespace dflash::engine {

void Scheduler::Draft(const std::vector<Sequence*>& rows, const std::vector<std::vector<int32_t>>& committed,
                      const std::vector<int32_t>& n, const std::vector<bool>& continues, int32_t next, int32_t k) {
  const int64_t bucket = NextPow2(static_cast<int64_t>(rows.size()));
  std::vector<int32_t> append(rows.size(), 0), block_len(rows.size(), 0), last(rows.size(), 0);
  int32_t block = 1;
  std::vector<Sequence*> spec;
  for (size_t r = 0; r < rows.size(); ++r) {
    Sequence& s = *rows[r];
    if (!continues[r] || !s.speculative()) continue;
    spec.push_back(&s);
    append[r] = n[r];
    last[r] = committed[r].back();  // the bonus token: the next block starts from it
    block_len[r] = std::min(next, s.block_cap);
    block = std::max(block, block_len[r]);
  }
  try {
    // Rows that decoded plainly since their last block: their context first (the positions of
    // this verify are appended by the draft itself). A one-off cost of switching back to blocks,
    // kept out of the per-step draft cost the policy weighs (a long plain streak would otherwise
    // make every later block look dear, and keep the policy plain).
    for (Sequence* s : spec)
      for (int64_t pos = s->ctx_len; pos < s->kv_len;) {
        pos += rt_->Prefill(*s, pos, static_cast<int32_t>(std::min<int64_t>(s->kv_len - pos, rt_->options().prefill_chunk)));
        s->ctx_len = pos;
        ++local_.catch_ups;
        RegisterFullPages(*s);  // marks the pages whose context rows it wrote
      }
    const auto t0 = std::chrono::steady_clock::now();
    rt_->Draft(rows, append, last, block_len, block);
    policy_.RecordCost(BlockPolicy::Stage::kDraft, bucket, block, Since(t0));
    for (size_t r = 0; r < rows.size(); ++r) rows[r]->pending_block = block_len[r] >= 2 ? block_len[r] : 0;
    // The verified rows are in the context now (ctx_len advances with kv_len below).
    for (Sequence* s : spec) s->ctx_len = s->kv_len + n[std::find(rows.begin(), rows.end(), s) - rows.begin()];
  } catch (const std::exception& e) {
    FailAll(spec, e.what());
  }
}

void Scheduler::Anticipate(int64_t rows, int32_t block, int64_t max_position, int64_t logprobs) {
  // Compile in the background what the next iterations will probably need, before they need it:
  // the next rows bucket while requests wait for admission. (Longer contexts need nothing: every
  // program reads as many pages as its rows reach, models/paged_attention.h.)
  const int64_t bucket = NextPow2(rows);
  if (waiting_.empty() || bucket >= NextPow2(rt_->options().max_sequences)) return;
  rt_->Prefetch(rt_->VerifyShape(2 * bucket, block, max_position, logprobs));
  rt_->Prefetch(rt_->DraftShapeFor(2 * bucket, block, block, max_position));
}

}  // namespace dflash::engine
