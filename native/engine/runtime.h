// The device side of one replica of an engine: its mesh (the devices of one tensor-parallel
// group), weights, KV pool, draft pools, compiled programs and the three steps an iteration is
// made of (prefill, verify, draft). Only the replica's scheduler thread calls it
// (engine/scheduler.h), which makes it the only code that runs programs.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype_policy.h"
#include "engine/invocation.h"
#include "engine/kv_pool.h"
#include "engine/serving_plan.h"
#include "engine/options.h"
#include "engine/program_cache.h"
#include "engine/sequence.h"
#include "engine/weights.h"
#include "models/drafter.h"
#include "models/target.h"

namespace dflash::engine {

// One program of a runtime: a target score or a drafter shape.
struct ProgramShape {
  std::optional<models::ScoreShape> score;
  std::optional<models::DraftShape> draft;
};

class Runtime {
 public:
  // Throws std::invalid_argument naming the model field when the models do not split over the
  // mesh (models/parallel.h). `store`: shared by the replicas of one engine (program_cache.h).
  Runtime(pjrt::Mesh mesh, models::TargetConfig target, std::optional<models::DrafterConfig> drafter, EngineOptions options,
          std::shared_ptr<ProgramStore> store = nullptr);

  // ---- set-up (scheduler thread) ----
  // Chooses the dtypes from the checkpoint, uploads the weights (target first, then drafter);
  // returns the checkpoint tensors no program uses.
  std::vector<std::string> LoadWeights(const std::vector<TensorSource>& target, const std::vector<TensorSource>& drafter,
                                       const std::function<void(const LoadProgress&)>& progress);
  // Sizes (kvCacheMemory) and allocates the KV pool and the draft pool.
  void CreatePools();
  // Compiles the programs one stream needs (options.warmup).
  void Warmup();
  // The programs a server runs for sequences of up to `context` tokens and up to maxSequences
  // rows, greedy, sampled and grammar-constrained alike (precompile.cc), and compiling them (from
  // the disk cache when there), with progress after each.
  std::vector<ProgramShape> ServingShapes(int64_t context) const;
  void Precompile(const std::vector<ProgramShape>& shapes, const std::function<void(size_t done, size_t total)>& progress);
  // Runs a program once on padding rows (precompile.cc): its first-run costs paid before serving.
  void WarmRun(const ProgramRef& program);

  // ---- the steps of an iteration ----
  // Scores up to `len` known tokens of one sequence from position `start` on (pages already
  // grown), writing their K/V; speculative sequences also append their features to the drafter
  // context. Returns how many it scored (>= 1): fewer than `len` while the chunk's bucket is
  // still compiling. Used for prompts (start = kv_len) and to catch the drafter context up after
  // plain steps (start = ctx_len < kv_len; the K/V it rewrites are bit-identical).
  int32_t Prefill(Sequence& s, int64_t start, int32_t len);
  // Every row scores [last, its pending draft block] (or [last] alone); one host transfer of the
  // packed accept vectors. Returns, per row, the committed tokens (accepted drafts + bonus).
  std::vector<std::vector<int32_t>> Verify(const std::vector<Sequence*>& rows, int32_t k);
  // The draft pool on the host, (max_sequences + 1) rows of `width` tokens: grammar-constrained
  // rows check their pending drafts before the verify (engine/constrain.cc), one extra transfer.
  std::vector<int32_t> DraftPoolToHost(int64_t* width);
  // Releases the last verify's hidden features (kept only for the draft right after it).
  void DropFeatures() { feats_.reset(); }
  // After Verify, same rows in the same order (their state still the verify's): row r appends
  // its first n[r] verified feature rows to the drafter context and, if block_len[r] >= 2,
  // drafts its next block [last[r], ...] into the pool. Rows with n[r] == 0 are skipped. block
  // is the program's block (max of block_len; 1 = append only).
  void Draft(const std::vector<Sequence*>& rows, const std::vector<int32_t>& n, const std::vector<int32_t>& last,
             const std::vector<int32_t>& block_len, int32_t block);

  // ---- programs ----
  ProgramRef ScoreProgram(const models::ScoreShape& shape);
  ProgramRef DraftProgram(const models::DraftShape& shape);
  // logprobs: -1, or the top alternatives of the prompt log-probabilities the chunk computes.
  // With a drafter every prefill and verify also returns the drafter's features (plain rows of a
  // speculative engine share the speculative rows' programs; unused features cost a copy, not a
  // program).
  models::ScoreShape PrefillShape(int64_t k, int64_t max_position, int64_t logprobs = -1) const;
  // The shapes Verify and Draft run at, for `rows` rows whose largest position is max_position
  // (greedy, sampled and grammar-constrained rows alike: one program serves them all; every
  // verify takes token_mask); logprobs: the most top alternatives any row asks for (-1: none).
  models::ScoreShape VerifyShape(int64_t rows, int32_t k, int64_t max_position, int64_t logprobs = -1) const;
  models::DraftShape DraftShapeFor(int64_t rows, int64_t append, int32_t block, int64_t max_position) const;
  // Whether a program is compiled; queue it for the background compiler.
  bool Ready(const models::ScoreShape& s);
  bool Ready(const models::DraftShape& s);
  void Prefetch(const models::ScoreShape& s);
  void Prefetch(const models::DraftShape& s);
  // Block-table entries per row of a program whose rows reach `max_position`: the same for
  // every position below maxSeqLen (models/paged_attention.h).
  int64_t TablePages(int64_t max_position) const;

  // ---- state ----
  const models::TargetConfig& target() const { return target_; }
  const std::optional<models::DrafterConfig>& drafter() const { return drafter_; }
  const EngineOptions& options() const { return opt_; }
  const DtypeChoice& dtypes() const { return dtypes_; }
  const pjrt::Mesh& mesh() const { return mesh_; }
  int64_t devices() const { return static_cast<int64_t>(mesh_.size()); }
  bool drafter_replicated() const { return opt_.drafter_sharding == "replicated"; }
  // The first page's previous hash in the prefix index: this engine's models and numerics (a page
  // is the same bytes only for the same weights, dtypes and drafter).
  uint64_t prefix_seed() const { return prefix_seed_; }
  pjrt::Client& client() { return mesh_.client(); }
  const pjrt::Client& client() const { return mesh_.client(); }
  KvPool& pool() { return *pool_; }
  const KvPool& pool() const { return *pool_; }
  bool has_pool() const { return pool_ != nullptr; }
  ProgramCache& programs() { return programs_; }
  const ProgramCache& programs() const { return programs_; }
  DeviceCounters& counters() { return counters_; }
  const WeightMap& weights() const { return weights_; }
  int64_t weight_bytes() const { return weight_bytes_; }  // of the model (the logical tensors)
  // What each device of the mesh holds (the sum of its shards' sizes): weights and KV pool.
  std::vector<int64_t> DeviceWeightBytes() const;
  // Uploads the same host data to every device of the mesh.
  std::unique_ptr<pjrt::Array> Upload(const std::vector<int32_t>& v, std::vector<int64_t> dims);
  std::unique_ptr<pjrt::Array> UploadF32(const std::vector<float>& v, std::vector<int64_t> dims);
  int32_t max_seq_len() const { return max_seq_len_; }
  int32_t max_block() const { return drafter_ ? static_cast<int32_t>(drafter_->block_size) : 1; }
  int32_t none_slot() const { return opt_.max_sequences; }  // the draft pool's padding row
  int64_t prefill_bucket(int64_t len) const;
  // ServingShapes(maxSeqLen).size(), counted once the pools exist (0 before): stats().programs.
  int64_t serving_programs() const { return serving_programs_.load(); }
  // token_mask s32 (R, K, W) of a verify no grammar constrains: all ones, uploaded once per
  // (R, K) and kept (uploading R * K * V / 8 bytes each step would cost more than the masking
  // the program skips). Scheduler thread; mask_buffers() (any thread) counts them.
  pjrt::Array& AllowAllMask(int64_t rows, int64_t k);
  int64_t mask_buffers() const { return mask_buffers_.load(); }

  // Per-sequence state: binds the recurrent state arrays and/or the sliding rings (donated) and
  // the rows' slots (padded with the trash slot to `rows`), kept alive in `holder`; TakeState
  // takes the updated arrays back. No-ops for targets without per-sequence state.
  void BindState(Invocation& inv, const std::vector<int32_t>& slots, int64_t rows, std::unique_ptr<pjrt::Array>& holder);
  void TakeState(Outputs& out);
  // Per-sequence state: a hybrid target's recurrent group and/or the rings of its sliding-window
  // layers (models/sliding_ring.h).
  bool per_sequence_state() const { return target_.hybrid() || ring_pages() > 0; }
  // Pages of each sequence's sliding-window ring (0: no rings: a target without sliding layers, or
  // whose attention layers all slide). Sized for the widest window and the largest step the
  // engine runs (a prefill chunk's bucket, a verify of the drafter's block).
  int64_t ring_pages() const;
  // Slots of the state arrays: one per sequence and the trash slot (0: no per-sequence state).
  int64_t state_slots() const { return per_sequence_state() ? opt_.max_sequences + 1 : 0; }
  // Prefix caching of per-sequence state: snapshots of states at prefix points, two per sequence
  // (0: none), and the copy between a running slot and a snapshot (save: slot -> snapshot).
  int64_t snapshot_slots() const { return per_sequence_state() && opt_.prefix_caching ? 2 * static_cast<int64_t>(opt_.max_sequences) : 0; }
  void CopyState(bool save, int32_t from, int32_t to);
  // The state slot a prefill from `start` reads and writes: the sequence's own, or the trash slot
  // when `start` is behind what its state already holds (a drafter catch-up).
  int32_t CatchUpSlot(const Sequence& s, int64_t start) const;

 private:
  void BindCommon(Invocation& inv) { inv.BindWeights(weights_); }
  // The shape as this runtime's programs have it: its mesh and its state slots.
  models::ScoreShape Placed(const models::ScoreShape& s) const;
  void EnsureProbsPool();
  // Per-row (temperature, top_p, top_k), padded to `bucket` rows (greedy and padding rows: 0).
  static std::vector<float> SampleParams(const std::vector<Sequence*>& rows, int64_t bucket);

  pjrt::Mesh mesh_;
  models::TargetConfig target_;
  std::optional<models::DrafterConfig> drafter_;
  EngineOptions opt_;
  DtypeChoice dtypes_;
  int32_t max_seq_len_ = 0;
  uint64_t prefix_seed_ = 0;
  ProgramCache programs_;
  DeviceCounters counters_;
  WeightMap weights_;
  std::atomic<int64_t> weight_bytes_{0};                 // read by Stats() from other threads
  std::vector<std::atomic<int64_t>> device_weight_bytes_;
  std::unique_ptr<KvPool> pool_;
  std::unique_ptr<pjrt::Array> draft_pool_;   // s32 (M + 1, W): each slot's pending block (replicated)
  std::unique_ptr<pjrt::Array> probs_pool_;   // f32 (M + 1, W, V): its drafter distributions (sampling)
  std::unique_ptr<pjrt::Array> feats_;        // the last verify's hidden features, for Draft
  int64_t feats_rows_ = 0, feats_k_ = 0;
  std::atomic<int64_t> serving_programs_{0};
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<pjrt::Array>> allow_all_;  // (R, K) -> mask
  std::atomic<int64_t> mask_buffers_{0};
};

}  // namespace dflash::engine
