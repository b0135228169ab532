// Prefix caching in the scheduler (page_allocator.h has the index): at admission a sequence
// shares every cached page its known tokens start with and prefills only the rest; as its pages
// fill with committed tokens — prompt and generated alike, so a multi-turn chat finds its whole
// history — they are registered for later sequences. A sequence whose first uncached page is one
// a running prefill promised waits for it instead of computing it again (n > 1 choices, many
// requests behind one system prompt). Output is unchanged by a hit: with batch-invariant kernels a
// page's K/V (and drafter context rows) are the same bytes whoever computed them.
#include <algorithm>
#include <numeric>

#include "engine/page_allocator.h"
#include "engine/scheduler.h"
#include "models/gated_delta.h"

namespace dflash::engine {

void Scheduler::HashPages(Sequence& s, int64_t n) {
  const int32_t S = rt_->options().page_size;
  while (static_cast<int64_t>(s.page_hashes.size() + 1) * S <= n) {
    const size_t p = s.page_hashes.size();
    const uint64_t previous = p == 0 ? rt_->prefix_seed() : s.page_hashes[p - 1];
    s.page_hashes.push_back(PrefixHash(previous, s.tokens.data() + p * S, S));
  }
}

std::vector<int32_t> Scheduler::CachedPrefix(Sequence& s) {
  std::vector<int32_t> pages;
  // Prompt log-probabilities come from the prefill: such a sequence computes its whole prompt.
  if (!rt_->options().prefix_caching || s.wants_prompt_logprobs()) return pages;
  const int32_t S = rt_->options().page_size;
  HashPages(s, static_cast<int64_t>(s.tokens.size()) - 1);
  const auto& alloc = rt_->pool().pages();
  for (size_t p = 0; p < s.page_hashes.size(); ++p) {
    const int32_t page = alloc.Find(s.page_hashes[p], s.tokens.data() + p * S);
    if (page < 0) break;
    pages.push_back(page);
  }
  return pages;
}

bool Scheduler::WaitsForPromised(const Sequence& s, size_t cached) const {
  return cached < s.page_hashes.size() && promised_.count(s.page_hashes[cached]) > 0;
}

void Scheduler::ShareCachedPrefix(Sequence& s, const std::vector<int32_t>& cached) {
  const int32_t S = rt_->options().page_size;
  auto& alloc = rt_->pool().pages();
  for (int32_t page : cached) alloc.Share(s.pages, page);
  // A speculative sequence needs the drafter's context rows of its prefix too: its prefill resumes
  // at the first shared page without them (rewriting the same target K/V there, and writing the
  // context rows any sequence would write).
  int32_t usable = static_cast<int32_t>(cached.size());
  if (s.speculative()) {
    usable = 0;
    while (usable < static_cast<int32_t>(cached.size()) && alloc.has_context(cached[usable])) ++usable;
  }
  if (snapshots()) {
    // A hybrid target resumes from the state after the prefix: the longest one a snapshot has.
    usable = SnapshotCut(s, usable);
    if (usable > 0) {
      const int32_t snap = snapshot_of_.at(s.page_hashes[usable - 1]);
      snapshot_used_[snap] = ++snapshot_clock_;
      rt_->CopyState(false, snap, s.slot);
    }
  }
  s.kv_len = s.ctx_len = static_cast<int64_t>(usable) * S;
  s.registered_pages = static_cast<int32_t>(cached.size());
  s.context_pages = usable;
  for (size_t p = cached.size(); p < s.page_hashes.size(); ++p) {
    promised_.insert(s.page_hashes[p]);
    s.promised.push_back(s.page_hashes[p]);
  }
  const bool first = s.cached_tokens < 0;
  if (first) s.cached_tokens = s.kv_len;
  local_.prefix_queries += static_cast<int64_t>(s.tokens.size());
  local_.prefix_hits += s.kv_len;
}

void Scheduler::RegisterFullPages(Sequence& s) {
  if (!rt_->options().prefix_caching) return;
  const int32_t S = rt_->options().page_size;
  auto& alloc = rt_->pool().pages();
  HashPages(s, s.kv_len);
  while (s.registered_pages < static_cast<int32_t>(std::min(s.page_hashes.size(), s.pages.size())) &&
         static_cast<int64_t>(s.registered_pages + 1) * S <= s.kv_len) {
    const int32_t p = s.registered_pages++;
    alloc.Register(s.pages[p], s.page_hashes[p], s.tokens.data() + static_cast<size_t>(p) * S);  // false: a duplicate, kept private
    auto it = std::find(s.promised.begin(), s.promised.end(), s.page_hashes[p]);
    if (it != s.promised.end()) {
      promised_.erase(promised_.find(*it));
      s.promised.erase(it);
    }
  }
  if (!s.speculative()) return;
  const int32_t with_context = static_cast<int32_t>(std::min<int64_t>(s.ctx_len / S, s.registered_pages));
  while (s.context_pages < with_context) alloc.MarkContext(s.pages[s.context_pages++]);
}

int64_t Scheduler::snapshot_interval() const {
  // Whole pages and whole chunks of the recurrence's chunked form (kDeltaChunk, 64 tokens: a
  // snapshot is a whole state, 6 MB at Qwen3.5-0.8B): their least common multiple.
  const int64_t S = rt_->options().page_size;
  return std::lcm(S, models::kDeltaChunk);
}

int32_t Scheduler::SnapshotCut(const Sequence& s, int32_t pages) const {
  const int64_t S = rt_->options().page_size, every = snapshot_interval() / S;
  for (int32_t p = pages - pages % static_cast<int32_t>(every); p > 0; p -= static_cast<int32_t>(every))
    if (p <= static_cast<int32_t>(s.page_hashes.size()) && snapshot_of_.count(s.page_hashes[p - 1])) return p;
  return 0;
}

void Scheduler::SnapshotState(Sequence& s) {
  if (!snapshots() || s.kv_len == 0 || s.kv_len % snapshot_interval() != 0 || s.slot < 0) return;
  const int32_t S = rt_->options().page_size;
  HashPages(s, s.kv_len);
  const size_t p = static_cast<size_t>(s.kv_len / S);
  if (s.page_hashes.size() < p) return;
  const uint64_t h = s.page_hashes[p - 1];
  if (auto it = snapshot_of_.find(h); it != snapshot_of_.end()) {
    snapshot_used_[it->second] = ++snapshot_clock_;
    return;
  }
  if (snapshot_hash_.empty()) snapshot_hash_.assign(static_cast<size_t>(rt_->snapshot_slots()), 0), snapshot_used_.assign(snapshot_hash_.size(), 0);
  // A free snapshot slot, else the least recently used one.
  const int32_t snap = static_cast<int32_t>(std::min_element(snapshot_used_.begin(), snapshot_used_.end()) - snapshot_used_.begin());
  if (snapshot_hash_[snap] != 0) snapshot_of_.erase(snapshot_hash_[snap]);
  rt_->CopyState(true, s.slot, snap);
  snapshot_hash_[snap] = h;
  snapshot_used_[snap] = ++snapshot_clock_;
  snapshot_of_[h] = snap;
}

void Scheduler::Unpromise(Sequence& s, size_t keep) {
  while (s.promised.size() > keep) {
    auto it = promised_.find(s.promised.back());
    if (it != promised_.end()) promised_.erase(it);
    s.promised.pop_back();
  }
}

}  // namespace dflash::engine
