// The engine facade: see engine.h.
#include "engine/engine.h"

#include <algorithm>
#include <stdexcept>

namespace dflash::engine {
namespace {

std::string Ids(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) s += (s.empty() ? "" : ", ") + std::to_string(id);
  return s;
}

void Add(SchedulerStats& sum, const SchedulerStats& s) {
  sum.iterations += s.iterations, sum.decode_iterations += s.decode_iterations, sum.prefill_calls += s.prefill_calls;
  sum.preemptions += s.preemptions, sum.tokens += s.tokens, sum.verify_rows += s.verify_rows, sum.catch_ups += s.catch_ups;
  sum.running += s.running, sum.queued += s.queued, sum.free_pages += s.free_pages, sum.total_pages += s.total_pages;
  sum.last_block = std::max(sum.last_block, s.last_block);
  sum.offered.resize(std::max(sum.offered.size(), s.offered.size()), 0);
  sum.accepted.resize(std::max(sum.accepted.size(), s.accepted.size()), 0);
  for (size_t i = 0; i < s.offered.size(); ++i) sum.offered[i] += s.offered[i];
  for (size_t i = 0; i < s.accepted.size(); ++i) sum.accepted[i] += s.accepted[i];
  sum.device.executions += s.device.executions, sum.device.host_transfers += s.device.host_transfers;
  sum.device.cache_copies += s.device.cache_copies, sum.device.device_seconds += s.device.device_seconds;
  sum.prefix_queries += s.prefix_queries, sum.prefix_hits += s.prefix_hits, sum.cached_pages += s.cached_pages;
  sum.grammar_rows += s.grammar_rows, sum.grammar_seconds += s.grammar_seconds;
}

}  // namespace

std::vector<std::vector<int64_t>> PlanReplicas(const std::vector<int64_t>& available, const std::vector<int64_t>& wanted,
                                               int32_t tp, int32_t dp, const std::string& platform) {
  const size_t need = static_cast<size_t>(tp) * static_cast<size_t>(dp);
  const std::string mesh = "tensorParallel " + std::to_string(tp) + " x dataParallel " + std::to_string(dp);
  std::vector<int64_t> ids = wanted;
  if (ids.empty()) {
    if (available.size() < need)
      throw std::invalid_argument(mesh + " needs " + std::to_string(need) + " devices; the " + platform + " plugin has " +
                                  std::to_string(available.size()) + " (ids " + Ids(available) + ")");
    ids.assign(available.begin(), available.begin() + static_cast<std::ptrdiff_t>(need));
  }
  if (ids.size() != need)
    throw std::invalid_argument(mesh + " needs " + std::to_string(need) + " devices; 'devices' lists " + std::to_string(ids.size()) +
                                " (" + Ids(ids) + ")");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (std::find(available.begin(), available.end(), ids[i]) == available.end())
      throw std::invalid_argument("device " + std::to_string(ids[i]) + " is not one of the " + platform + " plugin's devices (ids " +
                                  Ids(available) + ")");
    for (size_t j = 0; j < i; ++j)
      if (ids[j] == ids[i]) throw std::invalid_argument("device " + std::to_string(ids[i]) + " is listed twice in 'devices'");
  }
  std::vector<std::vector<int64_t>> plan(static_cast<size_t>(dp));
  for (size_t r = 0; r < plan.size(); ++r) plan[r].assign(ids.begin() + r * tp, ids.begin() + (r + 1) * tp);
  return plan;
}

Engine::Engine(std::shared_ptr<pjrt::Client> client, models::TargetConfig target, std::optional<models::DrafterConfig> drafter,
               EngineOptions options, std::vector<int64_t> device_ids, std::set<int32_t> eos_ids, Scheduler::EventSink sink,
               std::string tokenizer_json)
    : sink_(std::move(sink)), tokenizer_json_(std::move(tokenizer_json)), eos_ids_(eos_ids), vocab_size_(target.vocab_size) {
  std::vector<int64_t> available;
  for (PJRT_Device* d : client->addressable_devices()) available.push_back(client->device_id(d));
  const auto plan = PlanReplicas(available, device_ids, options.tensor_parallel, options.data_parallel, client->platform_name());
  auto store = std::make_shared<ProgramStore>(CompileSlots(options.compile_threads));
  store->share = plan.size() > 1;
  // Every runtime first (each checks that the models split over its mesh), then the threads.
  std::vector<std::unique_ptr<Runtime>> runtimes;
  for (const auto& ids : plan)
    runtimes.push_back(std::make_unique<Runtime>(pjrt::Mesh::OfIds(client, ids), target, drafter, options, store));
  for (size_t r = 0; r < runtimes.size(); ++r) {
    auto rep = std::make_unique<Replica>();
    rep->scheduler = std::make_unique<Scheduler>(std::move(runtimes[r]), eos_ids,
                                                 [this, r](std::vector<SequenceEvent>&& evs) { OnEvents(r, std::move(evs)); });
    replicas_.push_back(std::move(rep));
  }
}

Engine::~Engine() {
  Stop();
  for (auto& r : replicas_) r->scheduler.reset();
}

void Engine::OnEvents(size_t replica, std::vector<SequenceEvent>&& events) {
  int64_t finished = 0;
  {
    std::lock_guard<std::mutex> lock(route_mu_);
    for (const auto& e : events)
      if (!e.finish.empty() && replica_of_.erase(e.id)) ++finished;
  }
  replicas_[replica]->in_flight -= finished;
  sink_(std::move(events));
}

void Engine::Load(std::vector<TensorSource> target, std::vector<TensorSource> drafter, std::function<void(const LoadProgress&)> progress,
                  std::function<void(const ProgramEvent&)> programs,
                  std::function<void(const LoadResult&, const std::string& error)> done) {
  // Every replica loads on its own thread; the last one to finish reports.
  struct Join {
    std::mutex mu;
    size_t left;
    LoadResult result;
    std::string error;
  };
  auto join = std::make_shared<Join>();
  join->left = replicas_.size();
  auto shared_target = std::make_shared<const std::vector<TensorSource>>(std::move(target));
  auto shared_drafter = std::make_shared<const std::vector<TensorSource>>(std::move(drafter));
  for (size_t r = 0; r < replicas_.size(); ++r) {
    replicas_[r]->scheduler->Post([=, this](Runtime& rt) {
      LoadResult result;
      std::string error;
      try {
        rt.programs().set_observer(programs);
        // Progress of the first replica only: the others move the same bytes to other devices.
        result.unused_tensors = rt.LoadWeights(*shared_target, *shared_drafter, r == 0 ? progress : nullptr);
        if (r == 0) MakeVocabulary();
        rt.CreatePools();
        if (rt.options().warmup) rt.Warmup();
      } catch (const std::exception& e) {
        error = e.what();
        if (error.empty()) error = "dflash: engine load failed";
        if (replicas_.size() > 1) error = "replica " + std::to_string(r) + " (devices " + Ids(rt.mesh().ids()) + "): " + error;
      }
      bool last;
      {
        std::lock_guard<std::mutex> lock(join->mu);
        if (r == 0) join->result = std::move(result);
        if (join->error.empty()) join->error = error;
        last = --join->left == 0;
      }
      if (last) done(join->result, join->error);
    });
  }
}

void Engine::Precompile(int64_t context, std::function<void(size_t, size_t)> progress,
                        std::function<void(size_t, const std::string&)> done) {
  struct Join {
    std::mutex mu;
    size_t left, programs = 0;
    std::string error;
  };
  auto join = std::make_shared<Join>();
  join->left = replicas_.size();
  for (size_t r = 0; r < replicas_.size(); ++r) {
    replicas_[r]->scheduler->Post([=](Runtime& rt) {
      std::string error;
      size_t programs = 0;
      try {
        const auto shapes = rt.ServingShapes(context);
        programs = shapes.size();
        rt.Precompile(shapes, r == 0 ? progress : nullptr);
      } catch (const std::exception& e) {
        error = e.what();
      }
      bool last;
      {
        std::lock_guard<std::mutex> lock(join->mu);
        if (r == 0) join->programs = programs;
        if (join->error.empty()) join->error = error;
        last = --join->left == 0;
      }
      if (last) done(join->programs, join->error);
    });
  }
}

void Engine::MakeVocabulary() {
  std::shared_ptr<grammar::Vocabulary> vocab;
  std::string error;
  if (!grammar::Available()) {
    error = grammar::Vocabulary::kMissing;
  } else if (tokenizer_json_.empty()) {
    error = "this engine was created without a tokenizer (tokenizer.json), which grammars need";
  } else {
    try {
      // The end-of-sequence ids, smallest first: the grammar's end token and its aliases.
      vocab = std::make_shared<grammar::Vocabulary>(tokenizer_json_, vocab_size_, std::vector<int32_t>(eos_ids_.begin(), eos_ids_.end()));
    } catch (const std::exception& e) {
      error = e.what();  // the engine still serves unconstrained requests
    }
  }
  std::lock_guard<std::mutex> lock(vocab_mu_);
  vocab_ = std::move(vocab);
  vocab_error_ = error;
  tokenizer_json_.clear();
  tokenizer_json_.shrink_to_fit();
}

int64_t Engine::Submit(std::vector<int32_t> prompt, const RequestOptions& opts, const grammar::Spec* spec) {
  std::unique_ptr<grammar::Matcher> matcher;
  if (spec) {
    std::shared_ptr<grammar::Vocabulary> vocab;
    {
      std::lock_guard<std::mutex> lock(vocab_mu_);
      if (!vocab_) throw grammar::Unsupported("grammar: " + vocab_error_);
      vocab = vocab_;
    }
    matcher = std::make_unique<grammar::Matcher>(std::move(vocab), *spec);  // throws GrammarError
  }
  // The least loaded replica (fewest sequences submitted and not finished); ties: the first.
  size_t best = 0;
  for (size_t r = 1; r < replicas_.size(); ++r)
    if (replicas_[r]->in_flight.load() < replicas_[best]->in_flight.load()) best = r;
  const int64_t id = next_id_++;
  {
    std::lock_guard<std::mutex> lock(route_mu_);
    replica_of_[id] = best;
  }
  ++replicas_[best]->in_flight;
  try {
    replicas_[best]->scheduler->Submit(std::move(prompt), opts, id, std::move(matcher));
    ++replicas_[best]->submitted;
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(route_mu_);
      replica_of_.erase(id);
    }
    --replicas_[best]->in_flight;
    throw;
  }
  return id;
}

void Engine::Cancel(int64_t id) {
  size_t replica;
  {
    std::lock_guard<std::mutex> lock(route_mu_);
    auto it = replica_of_.find(id);
    if (it == replica_of_.end()) return;  // finished already
    replica = it->second;
  }
  replicas_[replica]->scheduler->Cancel(id);
}

void Engine::Stop() {
  for (auto& r : replicas_) r->scheduler->Stop();
}

EngineStats Engine::Stats() const {
  EngineStats s;
  for (size_t r = 0; r < replicas_.size(); ++r) {
    const SchedulerStats one = replicas_[r]->scheduler->Stats();
    Add(s.scheduler, one);
    const Runtime& rt = replicas_[r]->scheduler->runtime();
    // Programs compile during load (warm-up) and at first use, between snapshots: read them live.
    s.scheduler.compiles += rt.programs().compiles();
    s.scheduler.disk_hits += rt.programs().disk_hits();
    s.scheduler.disk_rejects += rt.programs().disk_rejects();
    s.programs_loaded += static_cast<int64_t>(rt.programs().size());
    s.mask_buffers += rt.mask_buffers();
    s.program_maps += rt.programs().loaded_maps();
    s.programs_unloaded += rt.programs().evictions();
    ReplicaStats rs;
    rs.device_ids = rt.mesh().ids();
    rs.running = one.running, rs.queued = one.queued, rs.free_pages = one.free_pages, rs.total_pages = one.total_pages;
    rs.submitted = replicas_[r]->submitted.load();
    rs.device_weight_bytes = rt.DeviceWeightBytes();
    if (rt.has_pool()) rs.device_kv_bytes = rt.pool().bytes();
    s.replicas.push_back(std::move(rs));
  }
  const Runtime& rt = replicas_[0]->scheduler->runtime();
  s.dtype = pjrt::DTypeName(rt.dtypes().numerics.dtype);
  s.kv_dtype = pjrt::DTypeName(rt.dtypes().numerics.kv_dtype);
  s.dtype_reason = rt.dtypes().reason;
  s.weight_bytes = rt.weight_bytes();
  s.max_seq_len = rt.max_seq_len();
  s.max_block = rt.max_block();
  s.page_size = rt.options().page_size;
  s.max_sequences = rt.options().max_sequences;
  s.platform = rt.client().platform_name();
  s.tensor_parallel = rt.options().tensor_parallel;
  s.data_parallel = static_cast<int32_t>(replicas_.size());
  s.prefix_caching = rt.options().prefix_caching;
  s.adaptive = rt.options().adaptive;
  s.recurrent_layers = rt.target().num_linear_layers();
  s.recurrent_bytes_per_sequence = KvPool::StateBytes(rt.target(), rt.dtypes().numerics);
  s.recurrent_slots = rt.state_slots();
  if (rt.ring_pages() > 0) {
    s.ring_layers = rt.target().num_sliding_layers();
    s.ring_window = rt.target().max_window();
    s.ring_pages = rt.ring_pages();
    s.ring_bytes_per_sequence = KvPool::RingBytes(rt.target(), rt.dtypes().numerics, rt.options().page_size, rt.ring_pages(), 1);
  }
  if (rt.has_pool()) {
    s.kv_bytes = rt.pool().bytes() * rt.devices();
    s.page_bytes = (rt.pool().bytes() - rt.pool().state_bytes()) * rt.devices() / std::max(1, rt.pool().total_pages());
  }
  s.serving_programs = rt.serving_programs();
  s.process_maps = LastProcessMapCount();
  s.map_limit = MaxMapCount();
  return s;
}

}  // namespace dflash::engine
