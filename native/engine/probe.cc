// Oracle and benchmark hooks: see probe.h.
#include "engine/probe.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <stdexcept>

#include "engine/page_allocator.h"
#include "hlo/builder.h"
#include "models/program.h"
#include "models/token_mask.h"

namespace dflash::engine::probe {
namespace {

// Pages taken for the duration of one probe and given back whatever happens.
class ScratchPages {
 public:
  explicit ScratchPages(PageAllocator& a) : alloc_(a) {}
  ~ScratchPages() {
    for (auto& t : tables_) alloc_.Release(t);
  }
  std::vector<int32_t>& Take(int32_t pages) {
    tables_.emplace_back();
    alloc_.GrowTo(tables_.back(), pages);
    return tables_.back();
  }

 private:
  PageAllocator& alloc_;
  std::deque<std::vector<int32_t>> tables_;  // a deque: references from Take() stay valid
};

// The bytes of a replicated array (its first device's copy).
std::vector<uint8_t> Raw(pjrt::Array& a) {
  pjrt::Buffer& b = a.shard(0);
  std::vector<uint8_t> out(static_cast<size_t>(b.byte_size()));
  b.ToHost(out.data(), out.size());
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<int32_t> FlatTables(const std::vector<std::vector<int32_t>*>& tables, int64_t pages) {
  std::vector<int32_t> t(tables.size() * static_cast<size_t>(pages), 0);
  for (size_t r = 0; r < tables.size(); ++r) std::copy(tables[r]->begin(), tables[r]->end(), t.begin() + r * pages);
  return t;
}

}  // namespace

ScoreResult ScoreLogits(Runtime& rt, const std::vector<std::vector<int32_t>>& batch, const std::vector<int32_t>& hidden_layers) {
  if (batch.empty()) throw std::invalid_argument("scoreLogits: empty batch");
  if (rt.ring_pages() > 0 && batch.size() > 1) {
    // Sliding-window rings: a probe has only the trash slot's ring, which rows of one call would
    // share, so each sequence is scored in a call of its own.
    ScoreResult res;
    for (const auto& seq : batch) {
      ScoreResult one = ScoreLogits(rt, {seq}, hidden_layers);
      res.logits.push_back(std::move(one.logits[0]));
      if (!one.hidden.empty()) res.hidden.push_back(std::move(one.hidden[0]));
    }
    return res;
  }
  if (rt.ring_pages() > 0 && static_cast<int64_t>(batch[0].size()) + rt.target().max_window() > (rt.ring_pages() - 1) * rt.options().page_size)
    throw std::invalid_argument("scoreLogits: a sequence of " + std::to_string(batch[0].size()) + " tokens is longer than one step of this engine (its sliding-window ring holds " +
                                std::to_string((rt.ring_pages() - 1) * rt.options().page_size - rt.target().max_window()) + ")");
  size_t longest = 0;
  for (const auto& b : batch) {
    if (b.empty()) throw std::invalid_argument("scoreLogits: empty sequence in batch");
    longest = std::max(longest, b.size());
  }
  const int64_t R = static_cast<int64_t>(batch.size()), K = NextPow2(static_cast<int64_t>(longest));
  const int64_t P = rt.TablePages(static_cast<int64_t>(longest) - 1);
  const int32_t S = rt.options().page_size;
  ScratchPages scratch(rt.pool().pages());
  std::vector<std::vector<int32_t>*> tables;
  std::vector<int32_t> tokens(R * K, 0), positions(R * K, -1);
  for (int64_t r = 0; r < R; ++r) {
    tables.push_back(&scratch.Take(PageAllocator::PagesFor(static_cast<int64_t>(batch[r].size()), S)));
    for (size_t i = 0; i < batch[r].size(); ++i) tokens[r * K + i] = batch[r][i], positions[r * K + i] = static_cast<int32_t>(i);
  }
  models::ScoreShape shape{R, K, P, S, rt.pool().total_pages(), true, false, false, hidden_layers};
  auto prog = rt.ScoreProgram(shape);
  const pjrt::Mesh& c = rt.mesh();
  auto tok = c.Upload(tokens.data(), pjrt::DType::kS32, {R, K});
  auto pos = c.Upload(positions.data(), pjrt::DType::kS32, {R, K});
  const auto table = FlatTables(tables, P);
  auto tab = c.Upload(table.data(), pjrt::DType::kS32, {R, P});
  Invocation inv(prog, rt.mesh());
  inv.BindWeights(rt.weights());
  inv.BindDonated("k_cache", rt.pool().k.get()).BindDonated("v_cache", rt.pool().v.get());
  inv.Bind("tokens", tok.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
  std::unique_ptr<pjrt::Array> state;  // recurrent layers and rings: every row starts at position 0 in the trash slot
  rt.BindState(inv, {}, R, state);
  Outputs out = inv.Run(rt.counters());
  rt.pool().k = out.Take("k_cache");
  rt.pool().v = out.Take("v_cache");
  rt.TakeState(out);
  const int64_t V = rt.target().vocab_size;
  ScoreResult res;
  const auto all = CopyToHost<float>(*out.Take("logits"), rt.counters());
  for (int64_t r = 0; r < R; ++r)
    res.logits.emplace_back(all.begin() + r * K * V, all.begin() + (r * K + static_cast<int64_t>(batch[r].size())) * V);
  if (!hidden_layers.empty()) {
    auto hb = out.Take("hidden");
    const int64_t width = hb->dims().back();
    const auto raw = Raw(*hb);
    const auto h = DecodeFloats(raw.data(), hb->shard(0).element_count(), hb->dtype());
    for (int64_t r = 0; r < R; ++r)
      res.hidden.emplace_back(h.begin() + r * K * width, h.begin() + (r * K + static_cast<int64_t>(batch[r].size())) * width);
  }
  return res;
}

DraftResult DraftLogits(Runtime& rt, const std::vector<float>& feats, int32_t rows, int32_t last, int32_t block) {
  if (!rt.drafter()) throw std::invalid_argument("draftLogits: the engine has no drafter");
  const auto& d = *rt.drafter();
  const int64_t width = static_cast<int64_t>(d.target_layer_ids.size()) * rt.target().hidden_size;
  if (rows < 1 || static_cast<int64_t>(feats.size()) != rows * width)
    throw std::invalid_argument("draftLogits: features must be rows x " + std::to_string(width));
  if (block < 2 || block > d.block_size) throw std::invalid_argument("draftLogits: block must be in [2, " + std::to_string(d.block_size) + "]");
  const int32_t S = rt.options().page_size;
  const int64_t A = NextPow2(rows), P = rt.TablePages(rows + block);
  ScratchPages scratch(rt.pool().pages());
  std::vector<int32_t>& pages = scratch.Take(PageAllocator::PagesFor(rows + block, S));
  std::vector<float> padded(static_cast<size_t>(A * width), 0.0f);
  std::copy(feats.begin(), feats.end(), padded.begin());
  std::vector<int32_t> positions(A, -1);
  for (int32_t i = 0; i < rows; ++i) positions[i] = i;
  models::DraftShape shape{1, A, block, P, S, rt.pool().total_pages(), 0, 0, true, false};
  auto prog = rt.DraftProgram(shape);
  const pjrt::Mesh& c = rt.mesh();
  const pjrt::DType act = rt.dtypes().numerics.dtype;
  const auto fbytes = EncodeFloats(padded, act);
  auto fb = c.Upload(fbytes.data(), act, {1, A, width});
  auto pos = c.Upload(positions.data(), pjrt::DType::kS32, {1, A});
  std::vector<int32_t> table(P, 0);
  std::copy(pages.begin(), pages.end(), table.begin());
  auto tab = c.Upload(table.data(), pjrt::DType::kS32, {1, P});
  const int32_t start = rows, len = block;
  auto lb = c.Upload(&last, pjrt::DType::kS32, {1});
  auto sb = c.Upload(&start, pjrt::DType::kS32, {1});
  auto nb = c.Upload(&len, pjrt::DType::kS32, {1});
  Invocation inv(prog, rt.mesh());
  inv.BindWeights(rt.weights());
  inv.BindDonated("dk_cache", rt.pool().dk.get()).BindDonated("dv_cache", rt.pool().dv.get());
  inv.Bind("feats", fb.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
  inv.Bind("last", lb.get()).Bind("block_start", sb.get()).Bind("block_len", nb.get());
  Outputs out = inv.Run(rt.counters());
  rt.pool().dk = out.Take("dk_cache");
  rt.pool().dv = out.Take("dv_cache");
  DraftResult res;
  res.draft = CopyToHost<int32_t>(*out.Take("draft"), rt.counters());
  res.logits = CopyToHost<float>(*out.Take("logits"), rt.counters());
  return res;
}

double TimeVerify(Runtime& rt, int32_t rows, int32_t k, int32_t context, int32_t reps, VerifyMask mask) {
  if (rows < 1 || k < 1 || context < 0 || reps < 1) throw std::invalid_argument("timeVerify: rows >= 1, k >= 1, context >= 0, reps >= 1");
  const int32_t S = rt.options().page_size;
  const int64_t R = NextPow2(rows), P = rt.TablePages(context + k - 1);
  ScratchPages scratch(rt.pool().pages());
  std::vector<std::vector<int32_t>*> tables;
  std::vector<int32_t> tokens(R * k, 0), positions(R * k, -1), slots(R, rt.none_slot());
  for (int32_t r = 0; r < rows; ++r) {
    tables.push_back(&scratch.Take(PageAllocator::PagesFor(context + k, S)));
    for (int32_t i = 0; i < k; ++i) {
      tokens[r * k + i] = (i * 7 + r * 13 + 3) % static_cast<int32_t>(rt.target().vocab_size);
      positions[r * k + i] = context + i;
    }
  }
  while (static_cast<int64_t>(tables.size()) < R) tables.push_back(&scratch.Take(0));
  // The program a serving step of this size runs (greedy rows: the sampling inputs bound, its
  // branch skipped); a K wider than any draft block has no pool and no sampling.
  models::ScoreShape shape = rt.VerifyShape(rows, k, context + k - 1);
  if (rt.drafter() && k > shape.pool_width) shape.pool_rows = 0, shape.pool_width = 0, shape.sampling = false;
  shape.grammar = mask != VerifyMask::kNoInput;
  auto prog = rt.ScoreProgram(shape);
  const pjrt::Mesh& c = rt.mesh();
  auto tok = c.Upload(tokens.data(), pjrt::DType::kS32, {R, k});
  auto pos = c.Upload(positions.data(), pjrt::DType::kS32, {R, k});
  const auto table = FlatTables(tables, P);
  auto tab = c.Upload(table.data(), pjrt::DType::kS32, {R, P});
  auto slot = c.Upload(slots.data(), pjrt::DType::kS32, {R});
  std::unique_ptr<pjrt::Array> pool, params, uniforms, probs;
  if (shape.pool_rows) {
    std::vector<int32_t> zeros(static_cast<size_t>(shape.pool_rows * shape.pool_width), 0);
    pool = c.Upload(zeros.data(), pjrt::DType::kS32, {shape.pool_rows, shape.pool_width});
  }
  if (shape.sampling) {
    params = c.Upload(std::vector<float>(static_cast<size_t>(R * 3), 0.0f).data(), pjrt::DType::kF32, {R, 3});
    uniforms = c.Upload(std::vector<float>(static_cast<size_t>(R * 2 * k), 0.0f).data(), pjrt::DType::kF32, {R, 2 * k});
    if (shape.pool_rows) {
      const int64_t n = shape.pool_rows * shape.pool_width * rt.target().vocab_size;
      probs = c.Upload(std::vector<float>(static_cast<size_t>(n), 0.0f).data(), pjrt::DType::kF32, {shape.pool_rows, shape.pool_width, rt.target().vocab_size});
    }
  }
  std::unique_ptr<pjrt::Array> refusing;  // kConstrained: bits 0101...: every odd token allowed
  if (mask == VerifyMask::kConstrained) {
    const int64_t W = models::MaskWords(rt.target().vocab_size);
    refusing = c.Upload(std::vector<int32_t>(static_cast<size_t>(R * k * W), static_cast<int32_t>(0xAAAAAAAAu)).data(), pjrt::DType::kS32, {R, k, W});
  }
  pjrt::Array* token_mask = mask == VerifyMask::kConstrained ? refusing.get() : mask == VerifyMask::kAllowAll ? &rt.AllowAllMask(R, k) : nullptr;
  std::vector<double> times;
  for (int32_t rep = 0; rep <= reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    Invocation inv(prog, rt.mesh());
    inv.BindWeights(rt.weights());
    inv.BindDonated("k_cache", rt.pool().k.get()).BindDonated("v_cache", rt.pool().v.get());
    inv.Bind("tokens", tok.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
    if (pool) inv.Bind("draft_pool", pool.get()).Bind("pool_slot", slot.get());
    if (params) inv.Bind("sample_params", params.get()).Bind("uniforms", uniforms.get());
    if (probs) inv.Bind("probs_pool", probs.get());
    if (token_mask) inv.Bind("token_mask", token_mask);
    std::unique_ptr<pjrt::Array> state;  // timing only: the trash slot's state
    rt.BindState(inv, {}, R, state);
    Outputs out = inv.Run(rt.counters());
    rt.pool().k = out.Take("k_cache");
    rt.pool().v = out.Take("v_cache");
    rt.TakeState(out);
    CopyToHost<int32_t>(*out.Take("accept"), rt.counters());
    if (rep > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());  // rep 0 warms up
  }
  return Median(times);
}

double TimeDraft(Runtime& rt, int32_t rows, int32_t block, int32_t context, int32_t reps) {
  if (!rt.drafter()) throw std::invalid_argument("timeDraft: the engine has no drafter");
  const auto& d = *rt.drafter();
  if (rows < 1 || block < 2 || block > d.block_size || context < 0 || reps < 1)
    throw std::invalid_argument("timeDraft: rows >= 1, block in [2, " + std::to_string(d.block_size) + "], context >= 0, reps >= 1");
  const int32_t S = rt.options().page_size;
  const int64_t R = NextPow2(rows), A = block, P = rt.TablePages(context + 2 * block);
  const int64_t width = static_cast<int64_t>(d.target_layer_ids.size()) * rt.target().hidden_size;
  ScratchPages scratch(rt.pool().pages());
  std::vector<std::vector<int32_t>*> tables;
  std::vector<int32_t> positions(R * A, -1), last(R, 0), start(R, 0), len(R, 0), slots(R, rt.none_slot());
  for (int32_t r = 0; r < rows; ++r) {
    tables.push_back(&scratch.Take(PageAllocator::PagesFor(context + 2 * block, S)));
    for (int32_t i = 0; i < block; ++i) positions[r * A + i] = context + i;
    start[r] = context + block;
    len[r] = block;
  }
  while (static_cast<int64_t>(tables.size()) < R) tables.push_back(&scratch.Take(0));
  const pjrt::DType act = rt.dtypes().numerics.dtype;
  const auto fbytes = EncodeFloats(std::vector<float>(static_cast<size_t>(R * A * width), 0.01f), act);
  const pjrt::Mesh& c = rt.mesh();
  auto fb = c.Upload(fbytes.data(), act, {R, A, width});
  auto pos = c.Upload(positions.data(), pjrt::DType::kS32, {R, A});
  const auto table = FlatTables(tables, P);
  auto tab = c.Upload(table.data(), pjrt::DType::kS32, {R, P});
  auto lb = c.Upload(last.data(), pjrt::DType::kS32, {R});
  auto sb = c.Upload(start.data(), pjrt::DType::kS32, {R});
  auto nb = c.Upload(len.data(), pjrt::DType::kS32, {R});
  auto slot = c.Upload(slots.data(), pjrt::DType::kS32, {R});
  const int64_t M = rt.options().max_sequences + 1;
  std::vector<int32_t> zeros(static_cast<size_t>(M * d.block_size), 0);
  auto pool = c.Upload(zeros.data(), pjrt::DType::kS32, {M, d.block_size});
  const models::DraftShape shape = rt.DraftShapeFor(rows, A, block, context + 2 * block);  // what a serving step runs
  auto prog = rt.DraftProgram(shape);
  // Greedy rows: the sampling inputs bound, its branch skipped.
  auto params = c.Upload(std::vector<float>(static_cast<size_t>(R * 3), 0.0f).data(), pjrt::DType::kF32, {R, 3});
  auto uniforms = c.Upload(std::vector<float>(static_cast<size_t>(R * block), 0.0f).data(), pjrt::DType::kF32, {R, block});
  const int64_t V = rt.target().vocab_size;
  auto probs = c.Upload(std::vector<float>(static_cast<size_t>(M * d.block_size * V), 0.0f).data(), pjrt::DType::kF32, {M, d.block_size, V});
  std::vector<double> times;
  for (int32_t rep = 0; rep <= reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    Invocation inv(prog, rt.mesh());
    inv.BindWeights(rt.weights());
    inv.BindDonated("dk_cache", rt.pool().dk.get()).BindDonated("dv_cache", rt.pool().dv.get());
    inv.Bind("feats", fb.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
    inv.Bind("last", lb.get()).Bind("block_start", sb.get()).Bind("block_len", nb.get());
    inv.BindDonated("draft_pool", pool.get()).Bind("pool_slot", slot.get());
    if (shape.sampling) inv.Bind("sample_params", params.get()).Bind("uniforms", uniforms.get()).BindDonated("probs_pool", probs.get());
    Outputs out = inv.Run(rt.counters());
    rt.pool().dk = out.Take("dk_cache");
    rt.pool().dv = out.Take("dv_cache");
    pool = out.Take("draft_pool");
    if (shape.sampling) probs = out.Take("probs_pool");
    if (rep > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return Median(times);
}

double TimeCollectives(Runtime& rt, int32_t rows, int32_t k, int32_t reps) {
  if (rows < 1 || k < 1 || reps < 1) throw std::invalid_argument("timeCollectives: rows >= 1, k >= 1, reps >= 1");
  const int64_t n = rt.devices();
  if (n == 1) return 0;
  const int64_t R = NextPow2(rows), H = rt.target().hidden_size;
  const int64_t count = 2 * rt.target().num_layers + 1;
  const hlo::DType act = models::ToHlo(rt.dtypes().numerics.dtype);
  // x (n, R, k, H) split along dim 0: a sum over dim 0 is an all-reduce of one (R, k, H) part.
  // Each next sum scales x by the previous result, so it cannot start (or merge) before it.
  hlo::Builder b(n);
  const hlo::Value x = b.Input("x", {n, R, k, H}, act, std::nullopt, hlo::Sharding::Split(0));
  hlo::Value y;
  for (int64_t i = 0; i < count; ++i) {
    const hlo::Value term = i == 0 ? x : b.Mul(x, b.BroadcastInDim(y, {n, R, k, H}, {1, 2, 3}));
    y = b.Convert(b.Reduce(b.Convert(term, hlo::DType::kF32), {0}, hlo::ReduceKind::kSum), act);  // (R, k, H) replicated
  }
  const models::Program prog = models::FinishProgram(b, {{"y", y}});
  auto cp = rt.programs().Get("collectives r" + std::to_string(R) + " k" + std::to_string(k) + " x" + std::to_string(count) + " tp" +
                                   std::to_string(n) + " " + rt.dtypes().numerics.Key(),
                               [&] { return prog; });
  std::vector<float> ones(static_cast<size_t>(n * R * k * H), 1.0f / static_cast<float>(n));
  const auto bytes = EncodeFloats(ones, rt.dtypes().numerics.dtype);
  // Device i holds part i of x.
  std::vector<const void*> parts;
  const size_t part = bytes.size() / static_cast<size_t>(n);
  for (int64_t i = 0; i < n; ++i) parts.push_back(bytes.data() + i * part);
  auto split = rt.mesh().UploadShards(parts, rt.dtypes().numerics.dtype, {1, R, k, H}, 0);
  std::vector<double> times;
  for (int32_t rep = 0; rep <= reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    Invocation inv(cp, rt.mesh());
    inv.Bind("x", split.get());
    Outputs out = inv.Run(rt.counters());
    out.Take("y");
    if (rep > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return Median(times);
}

}  // namespace dflash::engine::probe
