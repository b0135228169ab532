// The scheduler: one thread that owns the device. It admits requests from a bounded FIFO queue
// when the KV pool has room, and runs iterations: prefill chunks of newly admitted prompts under
// a per-iteration token budget, then one batched verify of every decoding sequence (one
// device-to-host transfer of all rows' accept vectors), then one batched draft of their next
// blocks. Tokens leave through the event sink once per iteration.
//
// Everything callers do — Submit, Cancel, Post, Stats — is a queue operation or a short copy
// under a mutex the scheduler never holds while the device works, so a caller (the JS thread)
// never waits on device work.
//
// Pages: a sequence is admitted when the pages its known tokens need are free; pages then grow
// as it decodes. When the pool runs dry mid-decode, the most recently admitted sequence is
// preempted: its pages are freed and it goes back to the front of the queue with its generated
// tokens, to be prefilled again (recompute) when pages free up. Its output stream is unaffected.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/runtime.h"
#include "engine/sequence.h"
#include "engine/speculation.h"

namespace dflash::engine {

// Thrown by Submit when maxQueue requests already wait; the addon gives it code QUEUE_FULL.
struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SchedulerStats {
  int64_t iterations = 0, decode_iterations = 0, prefill_calls = 0, preemptions = 0;
  int64_t tokens = 0, verify_rows = 0;
  int64_t catch_ups = 0;                // prefill calls that caught a drafter context up after plain steps
  int32_t running = 0, queued = 0, free_pages = 0, total_pages = 0;
  int32_t last_block = 0;               // the block the latest decode iteration verified
  std::vector<int64_t> offered, accepted;  // engine-wide per draft position (index 0 unused)
  DeviceCounters device;
  int64_t compiles = 0, disk_hits = 0, disk_rejects = 0;
  // Prefix caching: prompt tokens looked up / found cached at admission, pages cached now.
  int64_t prefix_queries = 0, prefix_hits = 0;
  int32_t cached_pages = 0;
  // Structured output: verify rows under a grammar, and the host seconds their grammar took
  // (masks, draft checks, commits; not the draft pool's transfer).
  int64_t grammar_rows = 0;
  double grammar_seconds = 0;
};

class Scheduler {
 public:
  using EventSink = std::function<void(std::vector<SequenceEvent>&&)>;

  Scheduler(std::unique_ptr<Runtime> runtime, std::set<int32_t> eos_ids, EventSink sink);
  ~Scheduler();  // stops the thread and joins it
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates and queues a request under `id` (the engine's, unique over its replicas). Throws
  // std::invalid_argument for a request that can never run (naming the problem) and QueueFull
  // when the queue is full.
  // `grammar`: constrains the output (structured output), or null.
  void Submit(std::vector<int32_t> prompt, const RequestOptions& opts, int64_t id, std::unique_ptr<grammar::Matcher> grammar = nullptr);
  void Cancel(int64_t id);  // the sequence ends with finish "abort" at the next iteration
  // Runs `task` on the scheduler thread between iterations (set-up, oracle and bench hooks).
  void Post(std::function<void(Runtime&)> task);
  SchedulerStats Stats() const;
  // Stops taking work; running and queued sequences end with finish "abort".
  void Stop();

  // Read-only after set-up (safe from any thread once the load task has finished).
  const Runtime& runtime() const { return *rt_; }

 private:
  void Loop();
  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  void TakeInbox(std::vector<std::unique_ptr<Sequence>>& submitted, std::vector<int64_t>& cancelled,
                 std::vector<std::function<void(Runtime&)>>& tasks);
  void Iterate();
  void Admit();
  // Grows `s`'s pages to cover positions < upto, preempting newer sequences while short of
  // pages. Returns false when `s` itself had to be preempted (or cannot fit at all).
  bool Reserve(Sequence& s, int64_t upto, const std::set<const Sequence*>& planned);
  void Preempt(Sequence& s);
  void Finish(Sequence& s, const std::string& reason, const std::string& error = "");
  // This iteration's event of s (made on first use).
  SequenceEvent& EventOf(Sequence& s);
  // Moves the prompt log-probabilities s computed since its last event into `ev`.
  void TakePromptLogprobs(Sequence& s, SequenceEvent& ev);
  void FailAll(const std::vector<Sequence*>& rows, const std::string& message);
  void RunDecode(const std::vector<Sequence*>& rows);
  // ---- structured output (constrain.cc) ----
  // Before a verify: each grammar row's masks and the drafts it keeps; rows whose grammar ended
  // or failed are finished and left out of the returned rows.
  std::vector<Sequence*> Constrain(const std::vector<Sequence*>& rows);
  // After it: the grammar takes the tokens s commits (finish becomes "eos" when it is complete);
  // returns an error message, or "".
  std::string CommitGrammar(Sequence& s, const std::vector<int32_t>& tokens, std::string& finish);
  void Anticipate(int64_t rows, int32_t block, int64_t max_position, int64_t logprobs);
  // After a verify at block k: catch up the context of rows that decoded plainly, then draft
  // every continuing speculative row's next block of (up to) `next` tokens.
  void Draft(const std::vector<Sequence*>& rows, const std::vector<std::vector<int32_t>>& committed, const std::vector<int32_t>& n,
             const std::vector<bool>& continues, int32_t next, int32_t k);
  void Retire();
  void Publish();
  // ---- prefix caching (prefix_reuse.cc) ----
  // Extends s.page_hashes over its full pages of tokens[0, n).
  void HashPages(Sequence& s, int64_t n);
  // The cached pages a new admission of s would share: its known tokens but the last (what its
  // prefill would compute), page by page while the index has them.
  std::vector<int32_t> CachedPrefix(Sequence& s);
  // Whether s should wait for a running prefill that promised its first uncached page.
  bool WaitsForPromised(const Sequence& s, size_t cached) const;
  // At admission: shares `cached`, sets kv_len / ctx_len past what needs no computing, promises
  // the rest of its prompt's full pages.
  void ShareCachedPrefix(Sequence& s, const std::vector<int32_t>& cached);
  // After s's kv_len / ctx_len advanced: registers its newly full pages, marks their context.
  void RegisterFullPages(Sequence& s);
  void Unpromise(Sequence& s, size_t keep = 0);
  // ---- prefix caching of a hybrid target's recurrent state (prefix_reuse.cc) ----
  // A recurrent state describes every token before it, so a cached prefix is usable only where
  // a snapshot of the state after it exists. Snapshots are taken every snapshot_interval()
  // tokens (a multiple of the page size) when a step ends there — prefill chunks are cut at those
  // points — keyed by the hash of the page ending there (its chain covers every token before).
  bool snapshots() const { return rt_->snapshot_slots() > 0; }
  int64_t snapshot_interval() const;
  // After s's kv_len advanced: a snapshot of its state when it sits on a snapshot point.
  void SnapshotState(Sequence& s);
  // The longest prefix of `pages` pages of s ending at a snapshot (0: none).
  int32_t SnapshotCut(const Sequence& s, int32_t pages) const;

  std::unique_ptr<Runtime> rt_;
  std::set<int32_t> eos_ids_;
  EventSink sink_;
  BlockPolicy policy_;

  // Shared with callers, under mu_ (never held during device work).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::vector<int64_t> cancels_;
  std::vector<std::function<void(Runtime&)>> tasks_;
  bool stop_ = false;
  std::atomic<int64_t> queued_{0};  // inbox + waiting, for the maxQueue check
  mutable std::mutex stats_mu_;
  SchedulerStats stats_;

  // Scheduler thread only.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order
  std::vector<int32_t> free_slots_;
  std::vector<SequenceEvent> events_;
  std::map<int64_t, size_t> event_index_;  // sequence id -> its event in events_
  std::unordered_multiset<uint64_t> promised_;  // page hashes running prefills will register
  std::unordered_map<uint64_t, int32_t> snapshot_of_;  // page hash -> snapshot slot holding the state after it
  std::vector<uint64_t> snapshot_hash_;               // per snapshot slot: its hash (0: free)
  std::vector<int64_t> snapshot_used_;                // per snapshot slot: last use (LRU)
  int64_t snapshot_clock_ = 0;
  int64_t admissions_ = 0;
  SchedulerStats local_;
  std::thread thread_;
};

}  // namespace dflash::engine
