// The steps of an iteration (see runtime.h): prefill chunks, the batched verify with its one
// host transfer, and the batched draft. Each builds its host inputs padded to the program's
// buckets — rows to a power of two (padding rows: positions -1, block table of trash pages,
// the pool's "none" slot), tokens per row to the step's K — and binds everything by name.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "engine/page_allocator.h"
#include "engine/runtime.h"
#include "models/logprobs.h"
#include "models/token_mask.h"
#include "models/gated_delta.h"

namespace dflash::engine {
namespace {

// The sampling uniforms are counter-based: the uniform for (seed, position, purpose) is a hash,
// not the next draw of a generator, so a sequence's draws do not depend on which other
// sequences share its batch or how its steps were cut. Each position uses each purpose once
// (a position is decided once), which keeps the draws independent.
enum Purpose : uint64_t { kDraw = 1, kAccept = 2, kPropose = 3 };

float KeyedUniform(uint64_t seed, int64_t position, Purpose purpose) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(position) * 0xd1b54a32d192ed03ull + purpose * 0x8cb92ba72f3d8dd7ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;  // splitmix64's finaliser
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 random bits
}

// The first `pages` entries of a row's page list (padded with the trash page): a row may already
// hold pages for tokens after this step's (its next block, the rest of its prompt); the program,
// whose bucket covers the step's positions, reads and writes only slots below pages * S.
void CopyTable(const std::vector<int32_t>& row_pages, int64_t pages, std::vector<int32_t>::iterator out) {
  std::copy_n(row_pages.begin(), std::min<int64_t>(pages, static_cast<int64_t>(row_pages.size())), out);
}

// Block tables of `rows`, padded with trash-page rows to `bucket` rows of `pages` entries.
std::vector<int32_t> Tables(const std::vector<Sequence*>& rows, int64_t bucket, int64_t pages) {
  std::vector<int32_t> t(static_cast<size_t>(bucket * pages), 0);
  for (size_t r = 0; r < rows.size(); ++r) CopyTable(rows[r]->pages, pages, t.begin() + static_cast<int64_t>(r) * pages);
  return t;
}

// Appends `count` slots of a packed log-probability row (models/logprobs.h) of `top` alternatives,
// keeping `keep` of them (a row may ask for fewer than the program computes).
void AppendLogprobs(TokenLogprobs& out, const int32_t* packed, int64_t k, int64_t top, int64_t count, int64_t keep) {
  out.top = static_cast<int32_t>(keep);
  for (int64_t j = 0; j < count; ++j) {
    const models::SlotLogprobs slot = models::UnpackSlot(packed, k, top, j);
    out.logprob.push_back(slot.logprob);
    for (int64_t t = 0; t < keep; ++t) {
      float f;
      std::memcpy(&f, slot.top_bits + t, sizeof f);
      out.top_ids.push_back(slot.top_ids[t]);
      out.top_logprobs.push_back(f);
    }
  }
}
void AppendLogprobs(TokenLogprobs& out, const int32_t* packed, int64_t k, int64_t top, int64_t count) {
  AppendLogprobs(out, packed, k, top, count, top);
}

}  // namespace

std::vector<float> Runtime::SampleParams(const std::vector<Sequence*>& rows, int64_t bucket) {
  std::vector<float> params(static_cast<size_t>(bucket * 3), 0.0f);
  for (size_t r = 0; r < rows.size(); ++r) {
    const Sequence* s = rows[r];
    if (!s || !s->sampling) continue;
    params[r * 3 + 0] = static_cast<float>(s->opts.temperature);
    params[r * 3 + 1] = static_cast<float>(s->opts.top_p);
    params[r * 3 + 2] = static_cast<float>(s->opts.top_k);
  }
  return params;
}

models::ScoreShape Runtime::PrefillShape(int64_t k, int64_t max_position, int64_t logprobs) const {
  models::ScoreShape shape{1, k, TablePages(max_position), opt_.page_size, pool_->total_pages(), false, false, false, {}};
  shape.logprobs = logprobs;
  if (drafter_) shape.hidden_layers = drafter_->target_layer_ids;
  return shape;
}

int32_t Runtime::Prefill(Sequence& s, int64_t start, int32_t len) {
  // One row per call: prefill shapes then vary only in K and P. The chunk runs with the largest
  // compiled K up to the one it wants (which is compiled in the background meanwhile), so a new
  // prompt length costs a few more calls, not a stall of every stream behind a compile.
  const bool spec = s.speculative();
  const int64_t last = start + len - 1;
  const int64_t want = prefill_bucket(len);
  // Prompt log-probabilities (echo): computed by the chunk that reaches their positions first.
  const bool prompt_lp = s.wants_prompt_logprobs() && start + 1 == s.prompt_lp_next;
  const int64_t lp = prompt_lp ? s.opts.prompt_logprobs : -1;
  auto ready = [&](int64_t k) {
    const auto shape = PrefillShape(k, last, lp);
    return Ready(shape) && (!spec || Ready(DraftShapeFor(1, k, 0, last)));
  };
  int64_t K = want;
  if (!ready(want)) {
    Prefetch(PrefillShape(want, last, lp));
    if (spec) Prefetch(DraftShapeFor(1, want, 0, last));
    // A hybrid target falls back no lower than one chunk of its recurrence's chunked form while a
    // whole chunk remains: every split of a prompt then computes the same chunks, bit for bit.
    const int64_t lowest = target_.hybrid() && len >= models::kDeltaChunk ? models::kDeltaChunk : 16;
    for (int64_t k = want / 2; k >= lowest; k /= 2)
      if (ready(k)) {
        K = k;
        break;
      }
  }
  const int32_t n = static_cast<int32_t>(std::min<int64_t>(len, K));
  const models::ScoreShape shape = PrefillShape(K, last, lp);
  const int64_t P = shape.pages_per_row;
  std::vector<int32_t> tokens(K, 0), positions(K, -1), table(P, 0), next(K, 0);
  for (int32_t j = 0; j < n; ++j) {
    tokens[j] = s.tokens[start + j];
    positions[j] = static_cast<int32_t>(start + j);
    if (start + j + 1 < static_cast<int64_t>(s.tokens.size())) next[j] = s.tokens[start + j + 1];
  }
  CopyTable(s.pages, P, table.begin());
  auto prog = ScoreProgram(shape);
  auto tok = Upload(tokens, {1, K}), pos = Upload(positions, {1, K}), tab = Upload(table, {1, P});
  Invocation inv(prog, mesh_);
  BindCommon(inv);
  inv.BindDonated("k_cache", pool_->k.get()).BindDonated("v_cache", pool_->v.get());
  inv.Bind("tokens", tok.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
  // Recurrent layers: the row's state slot. A drafter catch-up (start < kv_len) rescores positions
  // the state has already passed, so it reads and writes the trash slot instead (hybrid engines
  // run without adaptive speculation, which is what makes catch-ups; this keeps the state exact
  // if one happens, at the cost of that block's drafts).
  std::unique_ptr<pjrt::Array> state_buf;
  BindState(inv, {CatchUpSlot(s, start)}, 1, state_buf);
  std::unique_ptr<pjrt::Array> next_buf;
  if (prompt_lp) {
    next_buf = Upload(next, {1, K});
    inv.Bind("next_tokens", next_buf.get());
  }
  Outputs out = inv.Run(counters_);
  pool_->k = out.Take("k_cache");
  pool_->v = out.Take("v_cache");
  TakeState(out);
  if (prompt_lp) {
    // Tokens at positions start + 1 .. of the prompt: this request's one extra transfer per chunk.
    const auto packed = CopyToHost<int32_t>(*out.Take("prompt_logprobs"), counters_);
    const int64_t count = std::min<int64_t>(n, s.prompt_len - 1 - start);
    AppendLogprobs(s.prompt_logprobs, packed.data(), K, s.opts.prompt_logprobs, count);
    s.prompt_lp_next = start + 1 + count;
  }
  if (spec) {
    // The drafter's context rows for the same positions (append only, no block).
    auto feats = out.Take("hidden");
    auto dprog = DraftProgram(DraftShapeFor(1, K, 0, last));
    Invocation dinv(dprog, mesh_);
    BindCommon(dinv);
    dinv.BindDonated("dk_cache", pool_->dk.get()).BindDonated("dv_cache", pool_->dv.get());
    dinv.Bind("feats", feats.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
    Outputs dout = dinv.Run(counters_);
    pool_->dk = dout.Take("dk_cache");
    pool_->dv = dout.Take("dv_cache");
  }
  return n;
}

std::vector<std::vector<int32_t>> Runtime::Verify(const std::vector<Sequence*>& rows, int32_t k) {
  const int64_t R = NextPow2(static_cast<int64_t>(rows.size())), K = k;
  int64_t max_pos = 0, logprobs = -1;
  bool any_spec = false, any_grammar = false;
  for (Sequence* s : rows) {
    max_pos = std::max<int64_t>(max_pos, s->kv_len + std::max(1, s->pending_block) - 1);
    any_spec |= s->speculative();
    any_grammar |= s->grammar != nullptr;
    logprobs = std::max<int64_t>(logprobs, s->opts.logprobs);
  }
  const models::ScoreShape shape = VerifyShape(static_cast<int64_t>(rows.size()), k, max_pos, logprobs);
  const int64_t P = shape.pages_per_row;
  const int32_t none = none_slot();
  std::vector<int32_t> tokens(R * K, 0), positions(R * K, -1), slots(R, none);
  for (size_t r = 0; r < rows.size(); ++r) {
    const Sequence& s = *rows[r];
    const int32_t b = std::max(1, s.pending_block);
    if (b > K) throw std::logic_error("verify: a row's block exceeds the step's");
    tokens[r * K] = s.last();
    for (int32_t j = 0; j < b; ++j) positions[r * K + j] = static_cast<int32_t>(s.kv_len + j);
    if (s.pending_block > 0) slots[r] = s.slot;
  }
  const auto table = Tables(rows, R, P);
  if (drafter_) EnsureProbsPool();
  auto prog = ScoreProgram(shape);
  auto tok = Upload(tokens, {R, K}), pos = Upload(positions, {R, K}), tab = Upload(table, {R, P});
  Invocation inv(prog, mesh_);
  BindCommon(inv);
  inv.BindDonated("k_cache", pool_->k.get()).BindDonated("v_cache", pool_->v.get());
  inv.Bind("tokens", tok.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
  std::unique_ptr<pjrt::Array> slot_buf, params_buf, uniforms_buf, state_buf;
  {
    std::vector<int32_t> state_slots;
    for (Sequence* s : rows) state_slots.push_back(s->slot);
    BindState(inv, state_slots, R, state_buf);
  }
  if (drafter_) {
    slot_buf = Upload(slots, {R});
    inv.Bind("draft_pool", draft_pool_.get()).Bind("pool_slot", slot_buf.get());
  }
  {
    // Every verify takes the sampling inputs (one program for greedy and sampled rows; all-greedy
    // batches skip the sampling math on the device). Row r, slot j: [draw the token at position
    // kv_len + j + 1 | accept the draft at kv_len + j]; greedy and padding rows have temperature 0.
    std::vector<float> uniforms(static_cast<size_t>(R * 2 * K), 0.0f);
    for (size_t r = 0; r < rows.size(); ++r) {
      const Sequence& s = *rows[r];
      if (!s.sampling) continue;
      for (int64_t j = 0; j < K; ++j) {
        uniforms[r * 2 * K + j] = KeyedUniform(s.seed, s.kv_len + j + 1, kDraw);
        uniforms[r * 2 * K + K + j] = KeyedUniform(s.seed, s.kv_len + j, kAccept);
      }
    }
    params_buf = UploadF32(SampleParams(rows, R), {R, 3});
    uniforms_buf = UploadF32(uniforms, {R, 2 * K});
    inv.Bind("sample_params", params_buf.get()).Bind("uniforms", uniforms_buf.get());
    if (drafter_) inv.Bind("probs_pool", probs_pool_.get());
  }
  std::unique_ptr<pjrt::Array> mask_buf;
  if (any_grammar) {
    // Row r, slot j: the tokens its grammar allows there (Sequence::masks); all ones elsewhere.
    const int64_t W = models::MaskWords(target_.vocab_size);
    std::vector<int32_t> mask(static_cast<size_t>(R * K * W), -1);
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto& m = rows[r]->masks;
      if (rows[r]->grammar && static_cast<int64_t>(m.size()) > K * W) throw std::logic_error("verify: a row's grammar masks exceed the step's block");
      std::memcpy(mask.data() + r * K * W, m.data(), m.size() * sizeof(uint32_t));
    }
    mask_buf = Upload(mask, {R, K, W});
    inv.Bind("token_mask", mask_buf.get());
  } else {
    inv.Bind("token_mask", &AllowAllMask(R, K));
  }
  Outputs out = inv.Run(counters_);
  pool_->k = out.Take("k_cache");
  pool_->v = out.Take("v_cache");
  TakeState(out);
  if (any_spec) {
    feats_ = out.Take("hidden");
    feats_rows_ = R;
    feats_k_ = K;
  }
  auto accept_buf = out.Take("accept");
  const std::vector<int32_t> acc = CopyToHost<int32_t>(*accept_buf, counters_);  // the step's one transfer
  // A row: [a + 1, tokens.., bonus, 0..] (K + 1), then its packed log-probabilities, if any.
  const int64_t W = K + 1 + (logprobs >= 0 ? models::PackedLogprobsWidth(K, logprobs) : 0);
  std::vector<std::vector<int32_t>> committed(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const int32_t* row = acc.data() + r * W;
    const int32_t n = row[0];
    const int32_t b = std::max(1, rows[r]->pending_block);
    if (n < 1 || n > b) throw std::logic_error("verify returned an invalid accept count " + std::to_string(n) + " for a block of " + std::to_string(b));
    committed[r].assign(row + 1, row + 1 + n);
    Sequence& s = *rows[r];
    s.step_logprobs = TokenLogprobs{};
    if (s.opts.logprobs >= 0) {
      s.step_logprobs.top = s.opts.logprobs;
      AppendLogprobs(s.step_logprobs, row + K + 1, K, logprobs, n, s.opts.logprobs);
    }
  }
  return committed;
}

std::vector<int32_t> Runtime::DraftPoolToHost(int64_t* width) {
  if (!draft_pool_) throw std::logic_error("draft pool: none (no drafter)");
  *width = drafter_->block_size;
  return CopyToHost<int32_t>(*draft_pool_, counters_);
}

void Runtime::Draft(const std::vector<Sequence*>& rows, const std::vector<int32_t>& n, const std::vector<int32_t>& next_last,
                    const std::vector<int32_t>& block_len, int32_t block) {
  if (!feats_ || feats_rows_ != NextPow2(static_cast<int64_t>(rows.size())))
    throw std::logic_error("draft: no verify features for these rows");
  const int64_t R = feats_rows_, A = feats_k_, B = block >= 2 ? block : 0;
  int64_t max_pos = 0;
  for (size_t r = 0; r < rows.size(); ++r)
    if (n[r] > 0) max_pos = std::max<int64_t>(max_pos, rows[r]->kv_len + n[r] - 1);
  const models::DraftShape shape = DraftShapeFor(static_cast<int64_t>(rows.size()), A, block, max_pos);
  const int64_t P = shape.pages_per_row;
  const int32_t none = none_slot();
  // Rows' state is still the verify's: kv_len is where the verified block started.
  std::vector<int32_t> positions(R * A, -1), last(R, 0), start(R, 0), len(R, 0), slots(R, none);
  for (size_t r = 0; r < rows.size(); ++r) {
    const Sequence& s = *rows[r];
    if (n[r] == 0) continue;
    for (int32_t j = 0; j < n[r]; ++j) positions[r * A + j] = static_cast<int32_t>(s.kv_len + j);
    last[r] = next_last[r];
    start[r] = static_cast<int32_t>(s.kv_len + n[r]);
    if (B && block_len[r] >= 2) len[r] = block_len[r], slots[r] = s.slot;
  }
  const auto table = Tables(rows, R, P);
  auto prog = DraftProgram(shape);
  auto pos = Upload(positions, {R, A}), tab = Upload(table, {R, P});
  Invocation inv(prog, mesh_);
  BindCommon(inv);
  inv.BindDonated("dk_cache", pool_->dk.get()).BindDonated("dv_cache", pool_->dv.get());
  inv.Bind("feats", feats_.get()).Bind("positions", pos.get()).Bind("block_table", tab.get());
  std::unique_ptr<pjrt::Array> last_buf, start_buf, len_buf, slot_buf, params_buf, uniforms_buf;
  if (B) {
    last_buf = Upload(last, {R});
    start_buf = Upload(start, {R});
    len_buf = Upload(len, {R});
    slot_buf = Upload(slots, {R});
    inv.Bind("last", last_buf.get()).Bind("block_start", start_buf.get()).Bind("block_len", len_buf.get());
    inv.BindDonated("draft_pool", draft_pool_.get()).Bind("pool_slot", slot_buf.get());
    {
      // The sampling inputs, as for the verify (greedy rows: temperature 0). Row r's block token
      // i sits at position block_start + i.
      EnsureProbsPool();
      std::vector<Sequence*> drawing(rows.size(), nullptr);
      std::vector<float> uniforms(static_cast<size_t>(R * B), 0.0f);
      for (size_t r = 0; r < rows.size(); ++r) {
        if (len[r] < 2 || !rows[r]->sampling) continue;
        drawing[r] = rows[r];
        for (int64_t i = 0; i < B; ++i) uniforms[r * B + i] = KeyedUniform(rows[r]->seed, start[r] + i, kPropose);
      }
      const std::vector<float> params = SampleParams(drawing, R);
      params_buf = UploadF32(params, {R, 3});
      uniforms_buf = UploadF32(uniforms, {R, B});
      inv.Bind("sample_params", params_buf.get()).Bind("uniforms", uniforms_buf.get());
      inv.BindDonated("probs_pool", probs_pool_.get());
    }
  }
  Outputs out = inv.Run(counters_);
  pool_->dk = out.Take("dk_cache");
  pool_->dv = out.Take("dv_cache");
  if (B) {
    draft_pool_ = out.Take("draft_pool");
    probs_pool_ = out.Take("probs_pool");
  }
  feats_.reset();
}

}  // namespace dflash::engine
