// The engine: one target model (and optionally its DFlash drafter) resident on one PJRT device,
// a paged KV cache shared by every sequence, and the programs that run them. A sequence is
// advanced one call at a time: Prefill() once, then Step() until the caller stops. With a drafter,
// a step is draft -> verify -> accept chained on the device, and its only device-to-host
// transfer is the packed accept vector (count + tokens).
//
// Thread-safety: every public method may be called from any thread; device state (the caches
// are donated to each execution) is serialised by one mutex.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/page_allocator.h"
#include "engine/program_cache.h"
#include "engine/weights.h"
#include "models/drafter.h"
#include "models/target.h"
#include "pjrt/client.h"

namespace dflash::engine {

struct EngineOptions {
  int32_t page_size = 16;
  int32_t max_seq_len = 2048;    // prompt + generated tokens of one sequence
  int32_t max_sequences = 4;     // sequences that may hold pages at once
  int32_t prefill_chunk = 128;   // tokens per prefill program call (power of two)
  std::string cache_dir;         // on-disk compiled-program cache ("" = off)
};

struct StepResult {
  std::vector<int32_t> tokens;   // committed by this call, in order
  int32_t accepted_drafts = 0;   // of `tokens`, drafted and accepted
  int32_t proposed = 0;          // drafted tokens offered to the target
  double device_seconds = 0;     // time inside executions and the transfer
};

// Sampling parameters of one sequence; temperature 0 means greedy.
struct SamplingParams {
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;   // 0 = off
  uint64_t seed = 0;
};

struct EngineStats {
  int64_t host_transfers = 0, executions = 0, compiles = 0, disk_hits = 0, cache_copies = 0;
  int32_t free_pages = 0, total_pages = 0;
};

class Engine {
 public:
  Engine(std::shared_ptr<pjrt::Client> client, models::TargetConfig target,
         std::optional<models::DrafterConfig> drafter, EngineOptions options);
  ~Engine();

  void LoadWeights(bool drafter, const std::vector<TensorSource>& sources,
                   const std::function<void(const LoadProgress&)>& progress);

  // Registers a sequence; pages are taken lazily. block_size <= the drafter's, >= 2.
  int64_t StartSequence(std::vector<int32_t> prompt, int32_t max_new_tokens, bool speculative, int32_t block_size,
                        SamplingParams sampling = {});
  StepResult Prefill(int64_t seq);   // scores the prompt, returns the first generated token
  StepResult Step(int64_t seq);      // one decode (K = 1) or speculative step
  void FinishSequence(int64_t seq);  // frees its pages and device state

  // Oracle entry points for tests: run the score program on a batch of independent sequences
  // (positions 0..len-1) and return per-sequence logits (len x V) and, if asked, hidden states.
  std::vector<std::vector<float>> ScoreLogits(const std::vector<std::vector<int32_t>>& batch,
                                              const std::vector<int32_t>& hidden_layers,
                                              std::vector<std::vector<float>>* hidden);
  // Runs the drafter once on `rows` context feature rows (rows x n*H) with an empty context
  // before them; returns block logits (B x V) and the draft (B tokens, draft[0] = last_token).
  std::vector<float> DraftLogits(const std::vector<float>& feats, int32_t rows, int32_t last_token,
                                 int32_t block_size, std::vector<int32_t>* draft);

  // Microbenchmarks (bench/): median seconds of one execution of the verify program scoring
  // `k` tokens (hidden features + accept, as a speculative step does) over a context of
  // `context` tokens, and of the drafter with block `block` over a context of `context` rows.
  double TimeVerify(int32_t k, int32_t context, int32_t reps);
  double TimeDraft(int32_t block, int32_t context, int32_t reps);

  EngineStats Stats();
  const models::TargetConfig& target_config() const { return target_; }
  bool has_drafter() const { return drafter_.has_value(); }

 private:
  struct Sequence;
  using Buffers = std::vector<std::unique_ptr<pjrt::Buffer>>;

  Sequence& Get(int64_t seq);
  void RequireWeights(bool speculative) const;
  Buffers Run(pjrt::LoadedExecutable& exe, const std::vector<pjrt::Buffer*>& args);
  pjrt::LoadedExecutable& ScoreProgram(const models::ScoreShape& shape);
  pjrt::LoadedExecutable& DraftProgram(const models::DraftShape& shape);
  std::unique_ptr<pjrt::Buffer> Upload(const std::vector<int32_t>& v, std::vector<int64_t> dims);
  void ToHost(pjrt::Buffer& b, void* dst, size_t bytes);
  // Runs the target score program for one sequence; replaces the KV caches.
  Buffers ScoreOne(Sequence& s, pjrt::Buffer* tokens, const std::vector<int32_t>& positions, int32_t k,
                   bool argmax, bool hidden, bool accept);
  // Runs the drafter, appending `feats` rows (A of them) to the sequence's context.
  void Draft(Sequence& s, pjrt::Buffer& feats, pjrt::Buffer& accept, int32_t rows, int32_t n_valid);
  std::vector<pjrt::Buffer*> TargetArgs();
  // Sampling inputs of one call: (temperature, top_p, top_k) and n fresh uniforms in [0, 1).
  std::unique_ptr<pjrt::Buffer> SampleParams(const Sequence& s);
  std::unique_ptr<pjrt::Buffer> Uniforms(Sequence& s, int64_t n);
  // Takes the updated caches (results 0, 1) of a score execution. The old ones must have been
  // donated (updated in place); a plugin that copied them instead is counted in
  // EngineStats::cache_copies, which the tests require to stay 0.
  void ReplaceCaches(Buffers& out);
  std::vector<pjrt::Buffer*> DrafterArgs(Sequence& s);

  std::shared_ptr<pjrt::Client> client_;
  models::TargetConfig target_;
  std::optional<models::DrafterConfig> drafter_;
  EngineOptions opt_;
  ProgramCache programs_;
  PageAllocator pages_;
  int32_t total_pages_;

  std::mutex mu_;
  Buffers target_weights_, drafter_weights_;
  std::unique_ptr<pjrt::Buffer> k_cache_, v_cache_;  // (L, N, S, kvh, hd)
  std::map<int64_t, std::unique_ptr<Sequence>> seqs_;
  int64_t next_seq_ = 1;
  int64_t host_transfers_ = 0, executions_ = 0, cache_copies_ = 0;
  double device_seconds_ = 0;  // accumulated by Run/ToHost, read per call
};

int64_t NextPow2(int64_t x);

}  // namespace dflash::engine
