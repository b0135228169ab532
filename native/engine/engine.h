// The engine: one target model (and optionally its DFlash drafter) resident on one PJRT device,
// served by a scheduler thread (engine/scheduler.h). This facade is what the addon talks to:
// Load (a task on the scheduler thread), Submit / Cancel (queue operations), Stats (a snapshot).
//
//   Engine
//    ├─ Scheduler   queue, admission, preemption, iterations; the only thread that runs programs
//    │   └─ Runtime weights, KV pool, draft pools, programs, prefill / verify / draft steps
//    └─ static facts: dtypes chosen, memory sizes
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/scheduler.h"

namespace dflash::engine {

struct EngineStats {
  SchedulerStats scheduler;
  std::string platform, dtype, kv_dtype, dtype_reason;
  int64_t weight_bytes = 0, kv_bytes = 0, page_bytes = 0;
  int32_t max_seq_len = 0, max_block = 1, page_size = 0, max_sequences = 0;
};

struct LoadResult {
  std::vector<std::string> unused_tensors;
};

class Engine {
 public:
  Engine(std::shared_ptr<pjrt::Client> client, models::TargetConfig target, std::optional<models::DrafterConfig> drafter,
         EngineOptions options, std::set<int32_t> eos_ids, Scheduler::EventSink sink);

  // Uploads the weights, sizes the KV pool, compiles the warm-up programs: on the scheduler
  // thread; `done` is called there with the result or an error message.
  void Load(std::vector<TensorSource> target, std::vector<TensorSource> drafter, std::function<void(const LoadProgress&)> progress,
            std::function<void(const ProgramEvent&)> programs, std::function<void(const LoadResult&, const std::string& error)> done);

  int64_t Submit(std::vector<int32_t> prompt, const RequestOptions& opts) { return scheduler_->Submit(std::move(prompt), opts); }
  void Cancel(int64_t id) { scheduler_->Cancel(id); }
  void Post(std::function<void(Runtime&)> task) { scheduler_->Post(std::move(task)); }
  EngineStats Stats() const;  // the scheduler's last snapshot, with live compile counters
  void Stop() { scheduler_->Stop(); }

 private:
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace dflash::engine
