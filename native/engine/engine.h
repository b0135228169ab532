// The engine: one target model (and optionally its DFlash drafter) served by one or more
// replicas. Each replica owns a mesh of `tensorParallel` devices (its programs are SPMD programs
// split over them: models/parallel.h), its weights, KV pool and scheduler thread; with
// `dataParallel` > 1 every request goes to the least loaded replica. This facade is what the
// addon talks to: Load (a task on every replica's scheduler thread), Submit / Cancel (queue
// operations), Stats (a snapshot).
//
//   Engine
//    ├─ replica 0: Scheduler ── Runtime on Mesh{devices 0..tp-1}
//    ├─ replica 1: Scheduler ── Runtime on Mesh{devices tp..2tp-1}
//    ├─ ...          (one ProgramStore: a program compiles once and loads onto every replica)
//    └─ static facts: dtypes chosen, memory sizes
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/scheduler.h"

namespace dflash::engine {

// One replica's devices and what they hold.
struct ReplicaStats {
  std::vector<int64_t> device_ids;
  int32_t running = 0, queued = 0, free_pages = 0, total_pages = 0;
  int64_t submitted = 0;                     // requests the router sent here, ever
  std::vector<int64_t> device_weight_bytes;  // per device of the replica's mesh: its weight shards
  int64_t device_kv_bytes = 0;               // each device's part of the KV pool
};

struct EngineStats {
  SchedulerStats scheduler;  // summed over the replicas
  std::string platform, dtype, kv_dtype, dtype_reason;
  int64_t weight_bytes = 0, kv_bytes = 0, page_bytes = 0;  // one replica's model and pool (all its devices)
  int32_t max_seq_len = 0, max_block = 1, page_size = 0, max_sequences = 0;
  bool prefix_caching = false, adaptive = false;  // as the engine runs (a hybrid target turns both off)
  // Hybrid targets' recurrent group: its layers, the bytes of one sequence's state, the slots.
  int64_t recurrent_layers = 0, recurrent_bytes_per_sequence = 0, recurrent_slots = 0;
  // Sliding-window layers kept in per-sequence rings (models/sliding_ring.h): their layers, the
  // widest window, pages per ring, one ring's bytes (K and V, all devices); 0 layers: no rings.
  int64_t ring_layers = 0, ring_window = 0, ring_pages = 0, ring_bytes_per_sequence = 0;
  int32_t tensor_parallel = 1, data_parallel = 1;
  std::vector<ReplicaStats> replicas;
  // Programs: loaded now (every replica), the set precompile() makes for maxSeqLen (one replica),
  // and the process's memory maps against the system's limit (each loaded executable holds some);
  // the all-ones token masks kept for the verifies of unconstrained batches (every replica); the
  // memory maps the loaded programs' loads added, and the programs unloaded (their bounds).
  int64_t programs_loaded = 0, serving_programs = 0, process_maps = 0, map_limit = 0, mask_buffers = 0;
  int64_t program_maps = 0, programs_unloaded = 0;
};

struct LoadResult {
  std::vector<std::string> unused_tensors;
};

class Engine {
 public:
  // `device_ids`: the devices to use, tensor_parallel per replica in order (empty = the first
  // tensorParallel x dataParallel devices). Throws std::invalid_argument naming the numbers for a
  // mesh the client's devices or the models cannot make.
  // `tokenizer_json`: the model's tokenizer.json, for grammars (structured output); "" = none.
  Engine(std::shared_ptr<pjrt::Client> client, models::TargetConfig target, std::optional<models::DrafterConfig> drafter,
         EngineOptions options, std::vector<int64_t> device_ids, std::set<int32_t> eos_ids, Scheduler::EventSink sink,
         std::string tokenizer_json = "");
  // Joins the schedulers first: their last events go through OnEvents, which uses the members below.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Uploads the weights, sizes the KV pool, compiles the warm-up programs: on every replica's
  // scheduler thread; `done` is called once, after the last replica, with the result or the
  // first error message.
  void Load(std::vector<TensorSource> target, std::vector<TensorSource> drafter, std::function<void(const LoadProgress&)> progress,
            std::function<void(const ProgramEvent&)> programs, std::function<void(const LoadResult&, const std::string& error)> done);

  // Compiles (or loads from the disk cache) what a server runs for sequences of up to `context`
  // tokens (Runtime::ServingShapes) on every replica; progress is replica 0's; `done` once, after
  // the last replica, with the number of programs and the first error.
  void Precompile(int64_t context, std::function<void(size_t done, size_t total)> progress,
                  std::function<void(size_t programs, const std::string& error)> done);

  // Queues the request on the least loaded replica; returns its id. `grammar` (or null)
  // constrains its output: compiled here, a grammar::GrammarError (std::invalid_argument) names
  // what is wrong with it.
  int64_t Submit(std::vector<int32_t> prompt, const RequestOptions& opts, const grammar::Spec* grammar = nullptr);
  void Cancel(int64_t id);
  // Runs `task` on one replica's scheduler thread (probes and benchmarks: replica 0).
  void Post(std::function<void(Runtime&)> task, size_t replica = 0) { replicas_.at(replica)->scheduler->Post(std::move(task)); }
  EngineStats Stats() const;  // the schedulers' last snapshots, with live compile counters
  void Stop();
  size_t num_replicas() const { return replicas_.size(); }

 private:
  struct Replica {
    std::unique_ptr<Scheduler> scheduler;
    std::atomic<int64_t> in_flight{0};  // submitted and not finished: the load the router balances
    std::atomic<int64_t> submitted{0};
  };
  // The sink of replica r: counts finished sequences, then forwards.
  void OnEvents(size_t replica, std::vector<SequenceEvent>&& events);

  Scheduler::EventSink sink_;
  // The grammar engine's view of the tokenizer: made by the load (on a scheduler thread, it reads
  // the whole vocabulary), or why there is none.
  std::string tokenizer_json_;
  std::mutex vocab_mu_;
  std::shared_ptr<grammar::Vocabulary> vocab_;
  std::string vocab_error_ = "the engine is still loading";
  std::set<int32_t> eos_ids_;
  int64_t vocab_size_ = 0;
  void MakeVocabulary();
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::atomic<int64_t> next_id_{1};
  std::mutex route_mu_;
  std::map<int64_t, size_t> replica_of_;  // running ids -> replica (under route_mu_)
};

// The device ids of replica r given tensor_parallel x data_parallel over `available` (or the
// caller's `wanted`): throws std::invalid_argument naming what is missing.
std::vector<std::vector<int64_t>> PlanReplicas(const std::vector<int64_t>& available, const std::vector<int64_t>& wanted,
                                               int32_t tensor_parallel, int32_t data_parallel, const std::string& platform);

}  // namespace dflash::engine
