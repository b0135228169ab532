// Precompiling what a server will run (Runtime::Precompile): every shape bucket the scheduler asks
// for up to `context` tokens per sequence and up to maxSequences rows — prefill chunks, plain
// decode, the verify of a full block and the drafts around it, greedy and sampled — so that the
// first requests do not wait for (or run slower around) compiles. With the disk cache a later
// start loads them instead.
#include <algorithm>
#include <cstring>
#include <set>

#include "engine/runtime.h"
#include "models/paged.h"

namespace dflash::engine {

std::vector<ProgramShape> Runtime::ServingShapes(int64_t context, bool greedy, bool sampled, bool grammar) const {
  std::vector<ProgramShape> out;
  std::set<std::string> seen;
  auto add = [&](const ProgramShape& p) {
    const std::string key = p.score ? p.score->Key() : p.draft->Key();
    if (seen.insert(key).second) out.push_back(p);
  };
  const int64_t S = opt_.page_size;
  context = std::clamp<int64_t>(context, 1, max_seq_len_);
  // The pages buckets positions up to `context` fall in, each at its largest position.
  std::vector<int64_t> last_positions;
  int64_t previous = -1;
  for (int64_t pos = 0; pos < context; pos += S) {
    const int64_t bucket = PagesBucket(pos);
    if (bucket != previous) last_positions.push_back(std::min(context, bucket * S) - 1);
    previous = bucket;
  }
  const bool spec = drafter_.has_value();
  const int32_t B = max_block();
  std::vector<bool> modes;
  if (greedy) modes.push_back(false);
  if (sampled) modes.push_back(true);
  for (const int64_t pos : last_positions) {
    // A chunk of bucket k holds more than k / 2 tokens: it reaches past position k / 2.
    for (int64_t k = prefill_bucket(1); k <= prefill_bucket(opt_.prefill_chunk) && (k == prefill_bucket(1) || k / 2 <= pos); k *= 2) {
      add({PrefillShape(k, pos, false), std::nullopt});  // plain sequences (no drafter, or speculative: false)
      if (spec) add({PrefillShape(k, pos, true), std::nullopt}), add({std::nullopt, DraftShapeFor(1, k, 0, pos, false)});
    }
    for (int64_t rows = 1; rows <= NextPow2(opt_.max_sequences); rows *= 2)
      for (const bool sampling : modes) {
        // Batches with a grammar-constrained row run verifies that take token masks.
        for (const bool g : {false, grammar}) {
          add({VerifyShape(rows, 1, pos, false, sampling, -1, g), std::nullopt});  // a batch of plain sequences
          if (!spec) continue;
          add({VerifyShape(rows, 1, pos, true, sampling, -1, g), std::nullopt});
          add({VerifyShape(rows, B, pos, true, sampling, -1, g), std::nullopt});
        }
        if (!spec) continue;
        add({std::nullopt, DraftShapeFor(rows, 1, B, pos, sampling)});  // after a plain step
        add({std::nullopt, DraftShapeFor(rows, B, B, pos, sampling)});  // after a full block
      }
  }
  return out;
}

void Runtime::Precompile(const std::vector<ProgramShape>& shapes, const std::function<void(size_t done, size_t total)>& progress) {
  for (size_t i = 0; i < shapes.size(); ++i) {
    CompiledProgram& p = shapes[i].score ? ScoreProgram(*shapes[i].score) : DraftProgram(*shapes[i].draft);
    WarmRun(p);
    if (progress) progress(i + 1, shapes.size());
  }
}

void Runtime::WarmRun(CompiledProgram& prog) {
  // An executable's first run pays one-time costs (XLA:CPU packs each dot's weights, the
  // allocator grows): run it once now on padding — every position -1 writes only the trash
  // page, every pool slot is the "none" row — so the first real batch runs at speed.
  Invocation inv(prog, mesh_);
  BindCommon(inv);
  std::vector<std::unique_ptr<pjrt::Array>> owned;
  auto pool_array = [&](const std::string& name) -> std::unique_ptr<pjrt::Array>* {
    if (name == "k_cache") return &pool_->k;
    if (name == "v_cache") return &pool_->v;
    if (name == "dk_cache") return &pool_->dk;
    if (name == "dv_cache") return &pool_->dv;
    if (name == "draft_pool") return &draft_pool_;
    if (name == "probs_pool") {
      EnsureProbsPool();
      return &probs_pool_;
    }
    return nullptr;
  };
  std::vector<std::string> returned;
  for (const auto& in : prog.inputs) {
    if (weights_.count(in.name)) continue;
    if (auto* arr = pool_array(in.name)) {
      // Inputs the program hands back (donated) are replaced by its outputs below.
      if (prog.output_index(in.name) >= 0) inv.BindDonated(in.name, arr->get()), returned.push_back(in.name);
      else inv.Bind(in.name, arr->get());
      continue;
    }
    int64_t count = 1;
    for (int64_t d : in.shape) count *= d;
    const int32_t fill = in.name == "positions" || in.name == "token_mask" ? -1 : in.name == "pool_slot" ? none_slot() : 0;
    std::vector<uint8_t> bytes(static_cast<size_t>(count * pjrt::ByteSize(in.dtype)), 0);
    if (fill != 0) {
      std::vector<int32_t> ints(static_cast<size_t>(count), fill);
      std::memcpy(bytes.data(), ints.data(), bytes.size());
    }
    owned.push_back(mesh_.Upload(bytes.data(), in.dtype, in.shape));
    inv.Bind(in.name, owned.back().get());
  }
  Outputs out = inv.Run(counters_);
  for (const auto& name : returned) *pool_array(name) = out.Take(name);
}

}  // namespace dflash::engine
