// Precompiling what a server will run (Runtime::Precompile): every shape bucket the scheduler asks
// for up to `context` tokens per sequence and up to maxSequences rows — prefill chunks, plain
// decode, the verify of a full block and the drafts around it (greedy and sampled rows alike) — so that the
// first requests do not wait for (or run slower around) compiles. With the disk cache a later
// start loads them instead.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "engine/runtime.h"

namespace dflash::engine {

std::vector<ProgramShape> Runtime::ServingShapes(int64_t context) const {
  std::vector<ProgramShape> out;
  std::set<std::string> seen;
  auto add = [&](const ProgramShape& p) {
    const std::string key = p.score ? p.score->Key() : p.draft->Key();
    if (seen.insert(key).second) out.push_back(p);
  };
  // Every program reads its rows' pages in a loop bounded by the data (models/paged_attention.h):
  // one table width serves every context, so the positions only bound the prefill chunks.
  const int64_t pos = std::clamp<int64_t>(context, 1, max_seq_len_) - 1;
  using K = PlannedProgram::Kind;
  for (const PlannedProgram& p : ServingPlan({context, max_seq_len_, opt_.max_sequences, opt_.prefill_chunk, drafter_ ? max_block() : 0})) {
    switch (p.kind) {
      case K::kPrefill: add({PrefillShape(p.tokens, pos), std::nullopt}); break;
      case K::kPrefillContext: add({std::nullopt, DraftShapeFor(1, p.tokens, 0, pos)}); break;
      case K::kDecode: add({VerifyShape(p.rows, 1, pos), std::nullopt}); break;
      case K::kVerify: add({VerifyShape(p.rows, static_cast<int32_t>(p.tokens), pos), std::nullopt}); break;
      case K::kDraft: add({std::nullopt, DraftShapeFor(p.rows, p.tokens, static_cast<int32_t>(p.block), pos)}); break;
    }
  }
  return out;
}

void Runtime::Precompile(const std::vector<ProgramShape>& shapes, const std::function<void(size_t done, size_t total)>& progress) {
  auto program = [&](const ProgramShape& s) -> ProgramRef { return s.score ? ScoreProgram(*s.score) : DraftProgram(*s.draft); };
  // Workers compile (or load) ahead, as many at once as the store's compile slots allow; this
  // thread, the scheduler's (the only one that runs programs), takes them in order and runs each
  // once. A worker's failure is reported by this thread's own Get() of the same program.
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  struct Join {
    std::vector<std::thread>& threads;
    std::atomic<bool>& stop;
    ~Join() {
      stop = true;
      for (auto& t : threads) t.join();
    }
  } join{workers, stop};
  const size_t threads = std::min<size_t>(shapes.size(), static_cast<size_t>(programs_.compile_slots()));
  for (size_t w = 0; w < threads; ++w)
    workers.emplace_back([&] {
      for (size_t i; !stop && (i = next++) < shapes.size();) {
        try {
          program(shapes[i]);
        } catch (const std::exception&) {
        }
      }
    });
  for (size_t i = 0; i < shapes.size(); ++i) {
    WarmRun(program(shapes[i]));
    if (progress) progress(i + 1, shapes.size());
  }
}

void Runtime::WarmRun(const ProgramRef& prog) {
  // An executable's first run pays one-time costs (XLA:CPU packs each dot's weights, the
  // allocator grows): run it once now on padding — every position -1 writes only the trash
  // page, every pool slot is the "none" row — so the first real batch runs at speed.
  Invocation inv(prog, mesh_);
  BindCommon(inv);
  std::vector<std::unique_ptr<pjrt::Array>> owned;
  auto pool_array = [&](const std::string& name) -> std::unique_ptr<pjrt::Array>* {
    if (auto* a = pool_->Find(name)) return a;
    if (name == "draft_pool") return &draft_pool_;
    if (name == "probs_pool") {
      EnsureProbsPool();
      return &probs_pool_;
    }
    return nullptr;
  };
  std::vector<std::string> returned;
  for (const auto& in : prog->inputs) {
    if (weights_.count(in.name)) continue;
    if (auto* arr = pool_array(in.name)) {
      // Inputs the program hands back (donated) are replaced by its outputs below.
      if (prog->output_index(in.name) >= 0) inv.BindDonated(in.name, arr->get()), returned.push_back(in.name);
      else inv.Bind(in.name, arr->get());
      continue;
    }
    int64_t count = 1;
    for (int64_t d : in.shape) count *= d;
    const int32_t fill = in.name == "positions" || in.name == "token_mask" ? -1 : in.name == "pool_slot" || in.name == "state_slot" ? none_slot() : 0;
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
