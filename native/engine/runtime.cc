// Runtime set-up: dtypes, weights, pools, programs. The iteration steps are in steps.cc.
#include "engine/runtime.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "engine/page_allocator.h"
#include "models/gated_delta.h"
#include "models/sliding_ring.h"
#include "models/paged_attention.h"
#include "models/parallel.h"
#include "models/token_mask.h"

namespace dflash::engine {

namespace {

// Bytes of memory free for the KV pool: the device's own statistics where the plugin has them
// (GPU/TPU), else the host's available memory (the CPU plugin's device memory is host memory).
// On a mesh: the least any of its devices has free (each holds its part of every page).
int64_t FreeDeviceMemory(const pjrt::Mesh& mesh) {
  int64_t least = -1;
  for (const auto& d : mesh.client().devices()) {
    if (std::find(mesh.ids().begin(), mesh.ids().end(), d.id) == mesh.ids().end()) continue;
    auto limit = d.memory_stats.find("bytes_limit");
    auto used = d.memory_stats.find("bytes_in_use");
    if (limit == d.memory_stats.end() || limit->second <= 0) {
      least = -1;
      break;
    }
    const int64_t free = limit->second - (used != d.memory_stats.end() ? used->second : 0);
    least = least < 0 ? free : std::min(least, free);
  }
  if (least >= 0) return least;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return int64_t{4} << 30;  // unknown: assume 4 GiB
}

}  // namespace

Runtime::Runtime(pjrt::Mesh mesh, models::TargetConfig target, std::optional<models::DrafterConfig> drafter, EngineOptions options,
                 std::shared_ptr<ProgramStore> store)
    : mesh_(std::move(mesh)),
      target_(std::move(target)),
      drafter_(std::move(drafter)),
      opt_(std::move(options)),
      programs_(mesh_, opt_.cache_dir, std::move(store)),
      device_weight_bytes_(mesh_.size()) {
  programs_.set_max_loaded(opt_.max_loaded_programs);
  // Refuse a mesh the models do not split over before a byte is uploaded.
  models::TargetParallel(target_, devices());
  if (drafter_) models::DrafterParallel(*drafter_, target_, devices(), drafter_replicated());
  if (target_.hybrid()) {
    // Adaptive speculation's plain streaks would leave the drafter's context to be caught up from
    // a recurrent state that has moved on (docs/ARCHITECTURE.md, "Layer groups").
    opt_.adaptive = false;
  }
  max_seq_len_ = opt_.max_seq_len > 0 ? opt_.max_seq_len : static_cast<int32_t>(std::min<int64_t>(target_.max_position_embeddings, 1 << 24));
  if (max_seq_len_ < 2) throw std::invalid_argument("maxSeqLen must be at least 2, got " + std::to_string(max_seq_len_));
}

int64_t Runtime::prefill_bucket(int64_t len) const { return PrefillBucket(len); }

int64_t Runtime::TablePages(int64_t max_position) const {
  // One width for every sequence the engine admits (maxSeqLen, plus the blocks a verify and a
  // draft reach past it): the programs read pages in a loop bounded by the data, so the width
  // costs nothing and no program depends on the context length. Only a probe past maxSeqLen
  // gets a wider table.
  const int64_t reach = static_cast<int64_t>(max_seq_len_) + 2 * max_block();
  return models::TableWidth(std::max(reach, max_position + 1), opt_.page_size, dtypes_.numerics.key_chunk_slots);
}

std::vector<std::string> Runtime::LoadWeights(const std::vector<TensorSource>& target, const std::vector<TensorSource>& drafter,
                                              const std::function<void(const LoadProgress&)>& progress) {
  // Invariance matters only where a row's matmuls could see another row count: a verify next to
  // plain decoding (a drafter), or a batch (several sequences). One plain stream has nothing to be
  // invariant against, so it takes the fastest single-row path.
  const bool invariant = opt_.batch_invariant && (drafter_.has_value() || opt_.max_sequences > 1);
  dtypes_ = ChooseDtypes(client().platform_name(), CheckpointDtype(target), opt_.dtype, opt_.kv_dtype, invariant, QuantizedFormat(target));
  {
    // What makes a page's bytes: the checkpoints (tensor names, shapes, byte ranges, files),
    // the numerics and the drafter's configuration.
    std::string id = dtypes_.numerics.Key() + (drafter_ ? " drafter" + std::to_string(drafter_->block_size) : " plain");
    for (const auto* list : {&target, &drafter})
      for (const auto& t : *list) id += "|" + t.file + ":" + t.name + "@" + std::to_string(t.offset) + "+" + std::to_string(t.nbytes);
    prefix_seed_ = Fnv1a64(id);
  }
  if (target_.quant.enabled() || (drafter_ && drafter_->quant.enabled())) {
    // Narrow on the device, or expanded here: XLA:CPU materialises an in-program expansion every
    // step (bench/NOTES.md, "Quantized weights"), so the CPU expands once at load by default.
    const std::string& how = opt_.quantized_weights;
    target_.quant.expand_at_load = QuantizedExpandAtLoad(how, client().platform_name());
    if (drafter_) drafter_->quant.expand_at_load = target_.quant.expand_at_load;
    const std::string act = pjrt::DTypeName(dtypes_.numerics.dtype);
    std::string scheme = target_.quant.enabled() ? target_.quant.Key() : "";
    if (drafter_ && drafter_->quant.enabled()) scheme += (scheme.empty() ? "" : "; ") + std::string("drafter ") + drafter_->quant.Key();
    if (target_.quant.expand_at_load)
      dtypes_.reason += "; quantized Linear weights (" + scheme + ") expanded at load to " + act +
                        (how == "auto" ? " (quantizedWeights auto on cpu: XLA:CPU would expand them every step)" : "");
    else
      dtypes_.reason += "; Linear weights kept narrow on the device (" + scheme + "), expanded to " + act + " next to each dot";
  }
  const pjrt::DType dt = dtypes_.numerics.dtype;
  LoadProgress base;
  base.model = "target";
  auto unused = UploadWeights(mesh_, models::StoredSpecs(models::TargetWeightSpecs(target_, dt, devices()), devices()), target, "", weights_, progress, base);
  if (drafter_) {
    base.model = "drafter";
    auto more = UploadWeights(mesh_, models::StoredSpecs(models::DrafterWeightSpecs(*drafter_, dt, target_, devices(), drafter_replicated()), devices()),
                              drafter, models::kDrafterPrefix,
                              weights_, progress, base);
    for (auto& n : more) unused.push_back("drafter " + n);
  }
  int64_t total = 0;
  std::vector<int64_t> per_device(mesh_.size(), 0);
  for (const auto& [name, arr] : weights_) {
    total += arr->byte_size();
    for (size_t d = 0; d < arr->num_shards(); ++d) per_device[d] += arr->device_bytes(d);
  }
  weight_bytes_ = total;
  for (size_t d = 0; d < per_device.size(); ++d) device_weight_bytes_[d] = per_device[d];
  return unused;
}

std::vector<int64_t> Runtime::DeviceWeightBytes() const {
  std::vector<int64_t> bytes;
  for (const auto& b : device_weight_bytes_) bytes.push_back(b.load());
  return bytes;
}

void Runtime::CreatePools() {
  const models::DrafterConfig* d = drafter_ ? &*drafter_ : nullptr;
  const int64_t page_bytes = KvPool::PageBytes(target_, d, dtypes_.numerics, opt_.page_size, devices(), drafter_replicated(), ring_pages());  // on each device
  const int64_t per_seq = PageAllocator::PagesFor(max_seq_len_ + max_block(), opt_.page_size);
  const int64_t useful = static_cast<int64_t>(opt_.max_sequences) * per_seq + 1;
  int64_t budget;
  if (opt_.kv_cache_memory > 1) {
    budget = static_cast<int64_t>(opt_.kv_cache_memory);
  } else {
    const bool cpu = client().platform_name() == "cpu";
    // A CPU shares its memory with everything else on the host: take a quarter, not most of it.
    const double fraction = opt_.kv_cache_memory > 0 ? opt_.kv_cache_memory : (cpu ? 0.25 : 0.9);
    // Virtual CPU devices share the host's memory: the budget is for all of them together.
    const double share = cpu ? static_cast<double>(devices()) : 1.0;
    budget = static_cast<int64_t>(fraction * static_cast<double>(FreeDeviceMemory(mesh_)) / share);
  }
  // Per-sequence states first (split by heads): the running ones and the prefix-cache snapshots.
  budget -= KvPool::StateBytes(target_, dtypes_.numerics, opt_.page_size, ring_pages(), devices()) * (state_slots() + snapshot_slots());
  int64_t pages = std::min(useful, std::max<int64_t>(budget, 0) / page_bytes);
  if (pages < 2)
    throw std::runtime_error("kvCacheMemory: " + std::to_string(budget) + " bytes hold no KV page (one page is " +
                             std::to_string(page_bytes) + " bytes)");
  pages = std::min<int64_t>(pages, 1 << 30);
  pool_ = std::make_unique<KvPool>(mesh_, target_, d, dtypes_.numerics, opt_.page_size, static_cast<int32_t>(pages), drafter_replicated(),
                                   state_slots(), snapshot_slots(), ring_pages());
  if (drafter_) draft_pool_ = ZerosOnDevice(mesh_, pjrt::DType::kS32, {opt_.max_sequences + 1, drafter_->block_size});
  serving_programs_ = static_cast<int64_t>(ServingShapes(max_seq_len_).size());
}

void Runtime::EnsureProbsPool() {
  if (!probs_pool_)
    probs_pool_ = ZerosOnDevice(mesh_, pjrt::DType::kF32, {opt_.max_sequences + 1, drafter_->block_size, target_.vocab_size});
}

// Every program of this runtime runs on its mesh: the shapes callers make say nothing of it.
namespace {
models::ScoreShape OnMesh(models::ScoreShape s, int64_t devices, bool) {
  s.devices = devices;
  return s;
}
models::DraftShape OnMesh(models::DraftShape s, int64_t devices, bool replicated) {
  s.devices = devices;
  s.replicated = devices > 1 && replicated;
  return s;
}
}  // namespace

models::ScoreShape Runtime::Placed(const models::ScoreShape& shape) const {
  models::ScoreShape s = OnMesh(shape, devices(), drafter_replicated());
  s.state_slots = state_slots();
  s.ring_pages = ring_pages();
  return s;
}

int64_t Runtime::ring_pages() const {
  const int64_t sliding = target_.num_sliding_layers();
  if (sliding == 0 || sliding == target_.num_attention_layers()) return 0;
  const int64_t step = std::max<int64_t>(prefill_bucket(opt_.prefill_chunk), max_block() + 1);
  return models::RingPages(target_.max_window(), opt_.page_size, step);
}

int32_t Runtime::CatchUpSlot(const Sequence& s, int64_t start) const {
  if (start >= s.kv_len) return s.slot;
  // A recurrent state has passed these positions for good. A ring still holds them (and the
  // window before them) while they are within its last pages: the rewrite puts the same bytes
  // back where they are.
  if (target_.hybrid() || ring_pages() == 0) return none_slot();
  const int64_t S = opt_.page_size, held_from = ((s.kv_len - 1) / S - (ring_pages() - 1)) * S;
  return start - target_.max_window() + 1 >= held_from ? s.slot : none_slot();
}

void Runtime::BindState(Invocation& inv, const std::vector<int32_t>& slots, int64_t rows, std::unique_ptr<pjrt::Array>& holder) {
  if (!per_sequence_state()) return;
  std::vector<int32_t> padded(static_cast<size_t>(rows), none_slot());
  std::copy_n(slots.begin(), std::min<int64_t>(rows, static_cast<int64_t>(slots.size())), padded.begin());
  holder = Upload(padded, {rows});
  for (const auto& [name, arr] : pool_->StateArrays(false)) inv.BindDonated(name, arr->get());
  inv.Bind("state_slot", holder.get());
}

void Runtime::CopyState(bool save, int32_t from, int32_t to) {
  const std::string key = std::string("state-copy ") + (save ? "save" : "restore") + " m" + std::to_string(state_slots()) + " x" +
                          std::to_string(snapshot_slots()) + " ring" + std::to_string(ring_pages()) + " s" + std::to_string(opt_.page_size) +
                          " tp" + std::to_string(devices()) + " " + dtypes_.numerics.Key();
  auto prog = programs_.Get(key, [&] {
    return models::BuildStateCopy(target_, dtypes_.numerics, state_slots(), snapshot_slots(), save, devices(), ring_pages(), opt_.page_size);
  });
  auto f = Upload({from}, {1}), t = Upload({to}, {1});
  Invocation inv(prog, mesh_);
  const auto arrays = pool_->StateArrays(true);
  for (const auto& [name, arr] : arrays) inv.BindDonated(name, arr->get());
  inv.Bind("from", f.get()).Bind("to", t.get());
  Outputs out = inv.Run(counters_);
  for (const auto& [name, arr] : arrays) *arr = out.Take(name);
}

void Runtime::TakeState(Outputs& out) {
  for (const auto& [name, arr] : pool_->StateArrays(false)) *arr = out.Take(name);
}

ProgramRef Runtime::ScoreProgram(const models::ScoreShape& shape) {
  const auto s = Placed(shape);
  return programs_.Get(s.Key() + " " + dtypes_.numerics.Key(), [&] { return models::BuildTargetScore(target_, dtypes_.numerics, s); });
}

ProgramRef Runtime::DraftProgram(const models::DraftShape& shape) {
  const auto s = OnMesh(shape, devices(), drafter_replicated());
  return programs_.Get(s.Key() + " " + dtypes_.numerics.Key(), [&] { return models::BuildDrafter(*drafter_, target_, dtypes_.numerics, s); });
}

bool Runtime::Ready(const models::ScoreShape& s) {
  return programs_.Find(Placed(s).Key() + " " + dtypes_.numerics.Key()) != nullptr;
}
bool Runtime::Ready(const models::DraftShape& s) {
  return programs_.Find(OnMesh(s, devices(), drafter_replicated()).Key() + " " + dtypes_.numerics.Key()) != nullptr;
}

void Runtime::Prefetch(const models::ScoreShape& shape) {
  // The build runs on the background thread: it captures copies, not this call's references.
  const auto s = Placed(shape);
  programs_.Prefetch(s.Key() + " " + dtypes_.numerics.Key(),
                     [t = target_, n = dtypes_.numerics, s] { return models::BuildTargetScore(t, n, s); });
}

void Runtime::Prefetch(const models::DraftShape& shape) {
  const auto s = OnMesh(shape, devices(), drafter_replicated());
  programs_.Prefetch(s.Key() + " " + dtypes_.numerics.Key(),
                     [d = *drafter_, t = target_, n = dtypes_.numerics, s] { return models::BuildDrafter(d, t, n, s); });
}

models::ScoreShape Runtime::VerifyShape(int64_t rows, int32_t k, int64_t max_position, int64_t logprobs) const {
  models::ScoreShape shape{NextPow2(rows), k, TablePages(max_position), opt_.page_size, pool_->total_pages(), false, false, true, {}};
  shape.logprobs = logprobs;
  shape.grammar = true;  // all ones unless a row is constrained (AllowAllMask): no programs of its own
  if (drafter_) shape.hidden_layers = drafter_->target_layer_ids;
  if (drafter_) shape.pool_rows = opt_.max_sequences + 1, shape.pool_width = drafter_->block_size;
  // Greedy and sampled rows share the program (an all-greedy batch skips the sampling). A block
  // of several tokens samples against the drafter's distributions: only engines with a drafter
  // verify blocks (probes may time wider K without one: greedy then).
  shape.sampling = k == 1 || shape.pool_rows > 0;
  return shape;
}

models::DraftShape Runtime::DraftShapeFor(int64_t rows, int64_t append, int32_t block, int64_t max_position) const {
  const int64_t B = block >= 2 ? block : 0;
  models::DraftShape shape{NextPow2(rows), append, B, TablePages(max_position), opt_.page_size, pool_->total_pages(), 0, 0, false,
                           B > 0};  // a block samples or not per row, in one program
  if (B) shape.pool_rows = opt_.max_sequences + 1, shape.pool_width = drafter_->block_size;
  return shape;
}

pjrt::Array& Runtime::AllowAllMask(int64_t rows, int64_t k) {
  auto& slot = allow_all_[{rows, k}];
  if (!slot) {
    slot = Upload(std::vector<int32_t>(static_cast<size_t>(rows * k * models::MaskWords(target_.vocab_size)), -1),
                  {rows, k, models::MaskWords(target_.vocab_size)});
    mask_buffers_ = static_cast<int64_t>(allow_all_.size());
  }
  return *slot;
}

std::unique_ptr<pjrt::Array> Runtime::Upload(const std::vector<int32_t>& v, std::vector<int64_t> dims) {
  return mesh_.Upload(v.data(), pjrt::DType::kS32, dims);
}

std::unique_ptr<pjrt::Array> Runtime::UploadF32(const std::vector<float>& v, std::vector<int64_t> dims) {
  return mesh_.Upload(v.data(), pjrt::DType::kF32, dims);
}

void Runtime::Warmup() {
  // The programs of one stream with a short prompt: prefill, plain decode and, with a drafter,
  // the first draft, the verify of a full block and the draft after it (the shapes the steps ask
  // for, so the first request finds them compiled).
  const int64_t pre = prefill_bucket(1);
  ScoreProgram(PrefillShape(pre, 0));
  ScoreProgram(VerifyShape(1, 1, 0));
  if (!drafter_) return;
  const int32_t B = max_block();
  DraftProgram(DraftShapeFor(1, pre, 0, 0));
  DraftProgram(DraftShapeFor(1, 1, B, 0));
  ScoreProgram(VerifyShape(1, B, 0));
  DraftProgram(DraftShapeFor(1, B, B, 0));
}

}  // namespace dflash::engine
