// The scheduler's queue, admission and thread: see scheduler.h. The iteration itself (planning
// pages, prefill, verify, draft) is in iteration.cc.
#include "engine/scheduler.h"

#include <algorithm>

#include "engine/page_allocator.h"

namespace dflash::engine {

Scheduler::Scheduler(std::unique_ptr<Runtime> runtime, std::set<int32_t> eos_ids, EventSink sink)
    : rt_(std::move(runtime)),
      eos_ids_(std::move(eos_ids)),
      sink_(std::move(sink)),
      policy_(rt_->max_block(), rt_->options().adaptive) {
  for (int32_t s = rt_->options().max_sequences - 1; s >= 0; --s) free_slots_.push_back(s);
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void Scheduler::Submit(std::vector<int32_t> prompt, const RequestOptions& opts, int64_t id, std::unique_ptr<grammar::Matcher> grammar) {
  const Runtime& rt = *rt_;
  if (!rt.has_pool()) throw std::logic_error("the engine is still loading");
  if (prompt.empty()) throw std::invalid_argument("prompt is empty: at least one token is needed");
  const int64_t vocab = rt.target().vocab_size;
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= vocab)
      throw std::invalid_argument("prompt token " + std::to_string(prompt[i]) + " at index " + std::to_string(i) +
                                  " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
  auto s = std::make_unique<Sequence>();
  s->opts = opts;
  const int32_t drafter_block = rt.max_block();
  if (opts.block_size > 1 && !rt.drafter())
    throw std::invalid_argument("option 'blockSize' " + std::to_string(opts.block_size) + " needs a drafter (speculative decoding); this engine has none");
  if (opts.block_size > drafter_block)
    throw std::invalid_argument("option 'blockSize' must be in [0, " + std::to_string(drafter_block) + "] (0 = the drafter's block size, " +
                                std::to_string(drafter_block) + "), got " + std::to_string(opts.block_size));
  s->block_cap = opts.block_size == 0 ? drafter_block : opts.block_size;
  s->sampling = opts.temperature > 0;
  const int64_t total = static_cast<int64_t>(prompt.size()) + opts.max_tokens;
  if (total > rt.max_seq_len())
    throw std::invalid_argument("prompt (" + std::to_string(prompt.size()) + " tokens) + maxTokens (" + std::to_string(opts.max_tokens) +
                                ") exceeds maxSeqLen " + std::to_string(rt.max_seq_len()));
  const int64_t need = PageAllocator::PagesFor(total + s->block_cap, rt.options().page_size);
  const int64_t have = rt_->has_pool() ? rt_->pool().total_pages() - 1 : 0;
  if (need > have)
    throw std::invalid_argument("prompt + maxTokens need " + std::to_string(need) + " KV pages, the pool has " + std::to_string(have) +
                                " (raise kvCacheMemory or lower maxTokens)");
  s->prompt_len = static_cast<int64_t>(prompt.size());
  s->tokens = std::move(prompt);
  s->seed = static_cast<uint64_t>(opts.seed);
  s->acceptance = AcceptanceStats(s->block_cap);
  s->grammar = std::move(grammar);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) throw std::logic_error("the engine is disposed");
    if (queued_.load() >= rt.options().max_queue)
      throw QueueFull("queue full: " + std::to_string(queued_.load()) + " requests are waiting for admission (maxQueue " +
                      std::to_string(rt.options().max_queue) + ")");
    s->id = id;
    ++queued_;
    inbox_.push_back(std::move(s));
  }
  cv_.notify_all();
}

void Scheduler::Cancel(int64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

void Scheduler::Post(std::function<void(Runtime&)> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_all();
}

SchedulerStats Scheduler::Stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  SchedulerStats s = stats_;
  s.queued = static_cast<int32_t>(queued_.load());
  return s;
}

void Scheduler::TakeInbox(std::vector<std::unique_ptr<Sequence>>& submitted, std::vector<int64_t>& cancelled,
                          std::vector<std::function<void(Runtime&)>>& tasks) {
  std::swap(submitted, inbox_);
  std::swap(cancelled, cancels_);
  std::swap(tasks, tasks_);
}

void Scheduler::Loop() {
  for (;;) {
    std::vector<std::unique_ptr<Sequence>> submitted;
    std::vector<int64_t> cancelled;
    std::vector<std::function<void(Runtime&)>> tasks;
    const bool idle = !HasWork();
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (idle) cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !cancels_.empty() || !tasks_.empty(); });
      if (stop_) break;
      TakeInbox(submitted, cancelled, tasks);
    }
    for (auto& task : tasks) task(*rt_);  // tasks report their own errors
    for (auto& s : submitted) waiting_.push_back(std::move(s));
    for (int64_t id : cancelled) {
      auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& s) { return s->id == id; });
      if (w != waiting_.end()) {
        Finish(**w, "abort");
        waiting_.erase(w);
        --queued_;
        continue;
      }
      for (auto& s : running_)
        if (s->id == id && s->phase != Sequence::Phase::kDone) Finish(*s, "abort");
    }
    if (HasWork() && rt_->has_pool()) {
      try {
        Iterate();
      } catch (const std::exception& e) {
        std::vector<Sequence*> all;
        for (auto& s : running_) all.push_back(s.get());
        FailAll(all, e.what());
      }
    }
    Retire();
    Publish();
  }
  // Stopped: whatever is left ends as aborted.
  for (auto& s : waiting_) Finish(*s, "abort");
  for (auto& s : running_)
    if (s->phase != Sequence::Phase::kDone) Finish(*s, "abort");
  waiting_.clear();
  queued_ = 0;
  Retire();
  Publish();
}

SequenceEvent& Scheduler::EventOf(Sequence& s) {
  auto it = event_index_.find(s.id);
  if (it == event_index_.end()) {
    it = event_index_.emplace(s.id, events_.size()).first;
    events_.push_back(SequenceEvent{});
    events_.back().id = s.id;
    events_.back().cached_tokens = s.cached_tokens;
  }
  return events_[it->second];
}

void Scheduler::TakePromptLogprobs(Sequence& s, SequenceEvent& ev) {
  if (s.prompt_logprobs.size() == 0) return;
  ev.prompt_logprobs_from = s.prompt_lp_reported;
  s.prompt_lp_reported += static_cast<int64_t>(s.prompt_logprobs.size());
  ev.prompt_logprobs = std::move(s.prompt_logprobs);
  s.prompt_logprobs = TokenLogprobs{};
}

void Scheduler::Finish(Sequence& s, const std::string& reason, const std::string& error) {
  s.phase = Sequence::Phase::kDone;
  SequenceEvent& ev = EventOf(s);
  ev.finish = reason;
  ev.error = error;
}

void Scheduler::FailAll(const std::vector<Sequence*>& rows, const std::string& message) {
  for (Sequence* s : rows)
    if (s->phase != Sequence::Phase::kDone) Finish(*s, "error", message);
}

void Scheduler::Retire() {
  if (!rt_->has_pool()) {
    running_.clear();
    return;
  }
  auto& pages = rt_->pool().pages();
  for (auto& s : running_) {
    if (s->phase != Sequence::Phase::kDone) continue;
    pages.Release(s->pages);  // registered pages stay cached (evictable) for later prompts
    Unpromise(*s);
    if (s->slot >= 0) free_slots_.push_back(s->slot);
    s->slot = -1;
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->phase == Sequence::Phase::kDone; }),
                 running_.end());
}

void Scheduler::Publish() {
  local_.running = static_cast<int32_t>(running_.size());
  if (rt_->has_pool()) {
    local_.free_pages = rt_->pool().pages().free_pages();
    local_.total_pages = rt_->pool().total_pages() - 1;
    local_.cached_pages = rt_->pool().pages().cached_pages();
  }
  local_.device = rt_->counters();
  local_.compiles = rt_->programs().compiles();
  local_.disk_hits = rt_->programs().disk_hits();
  local_.disk_rejects = rt_->programs().disk_rejects();
  const AcceptanceStats& g = policy_.global();
  local_.offered.assign(g.max_block(), 0);
  local_.accepted.assign(g.max_block(), 0);
  for (int32_t i = 1; i < g.max_block(); ++i) local_.offered[i] = g.offered(i), local_.accepted[i] = g.accepted(i);
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_ = local_;
  }
  if (!events_.empty()) {
    std::vector<SequenceEvent> out;
    std::swap(out, events_);
    event_index_.clear();
    if (sink_) sink_(std::move(out));
  }
}

}  // namespace dflash::engine
