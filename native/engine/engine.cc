// The engine facade: see engine.h.
#include "engine/engine.h"

#include <algorithm>

namespace dflash::engine {

Engine::Engine(std::shared_ptr<pjrt::Client> client, models::TargetConfig target, std::optional<models::DrafterConfig> drafter,
               EngineOptions options, std::set<int32_t> eos_ids, Scheduler::EventSink sink) {
  auto rt = std::make_unique<Runtime>(std::move(client), std::move(target), std::move(drafter), std::move(options));
  scheduler_ = std::make_unique<Scheduler>(std::move(rt), std::move(eos_ids), std::move(sink));
}

void Engine::Load(std::vector<TensorSource> target, std::vector<TensorSource> drafter, std::function<void(const LoadProgress&)> progress,
                  std::function<void(const ProgramEvent&)> programs,
                  std::function<void(const LoadResult&, const std::string& error)> done) {
  scheduler_->Post([target = std::move(target), drafter = std::move(drafter), progress = std::move(progress),
                    programs = std::move(programs), done = std::move(done)](Runtime& rt) {
    LoadResult result;
    std::string error;
    try {
      rt.programs().set_observer(programs);
      result.unused_tensors = rt.LoadWeights(target, drafter, progress);
      rt.CreatePools();
      if (rt.options().warmup) rt.Warmup();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "dflash: engine load failed";
    }
    done(result, error);
  });
}

EngineStats Engine::Stats() const {
  EngineStats s;
  s.scheduler = scheduler_->Stats();
  const Runtime& rt = scheduler_->runtime();
  // Programs compile during load (warm-up) and at first use, between snapshots: read them live.
  s.scheduler.compiles = rt.programs().compiles();
  s.scheduler.disk_hits = rt.programs().disk_hits();
  s.scheduler.disk_rejects = rt.programs().disk_rejects();
  s.dtype = pjrt::DTypeName(rt.dtypes().numerics.dtype);
  s.kv_dtype = pjrt::DTypeName(rt.dtypes().numerics.kv_dtype);
  s.dtype_reason = rt.dtypes().reason;
  s.weight_bytes = rt.weight_bytes();
  s.max_seq_len = rt.max_seq_len();
  s.max_block = rt.max_block();
  s.page_size = rt.options().page_size;
  s.max_sequences = rt.options().max_sequences;
  s.platform = rt.client().platform_name();
  if (rt.has_pool()) {
    s.kv_bytes = rt.pool().bytes();
    s.page_bytes = s.kv_bytes / std::max(1, rt.pool().total_pages());
  }
  return s;
}

}  // namespace dflash::engine
