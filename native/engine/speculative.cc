// Prefill, plain decode and the DFlash speculative step.
//
// Speculative step for a sequence whose next block `draft` = [last, d1 .. d_{B-1}] is already on
// the device (made by the previous step's drafter call):
//   verify:  target scores the block at positions committed .. committed+B-1, writes its K/V
//            into the pages, and packs accept = [a+1, d1 .. da, bonus] on the device
//   copy:    accept -> host (the step's only device-to-host transfer)
//   draft:   the drafter appends the a+1 verified feature rows to its context and denoises the
//            next block [bonus, mask x (B-1)] -> next `draft`, still on the device
// Target K/V written past the accepted length are simply overwritten by the next verify; the
// pages beyond the committed length are returned to the allocator after every step.
#include <algorithm>
#include <stdexcept>

#include "engine/engine.h"
#include "engine/sequence.h"

namespace dflash::engine {

std::vector<pjrt::Buffer*> Engine::DrafterArgs(Sequence& s) {
  std::vector<pjrt::Buffer*> args;
  for (auto& w : drafter_weights_) args.push_back(w.get());
  args.push_back(target_weights_.front().get());  // embed_tokens, shared with the target
  args.push_back(target_.tie_word_embeddings ? target_weights_.front().get() : target_weights_.back().get());
  args.push_back(s.ctx_k.get());
  args.push_back(s.ctx_v.get());
  return args;
}

Engine::Buffers Engine::ScoreOne(Sequence& s, pjrt::Buffer* tokens, const std::vector<int32_t>& positions,
                                 int32_t k, bool argmax, bool hidden, bool accept) {
  int32_t last = 0;
  for (int32_t p : positions) last = std::max(last, p);
  pages_.GrowTo(s.block_table, PageAllocator::PagesFor(last + 1, opt_.page_size));
  const int32_t p = static_cast<int32_t>(NextPow2(static_cast<int64_t>(s.block_table.size())));
  std::vector<int32_t> table(p, 0);  // unused entries point at the trash page
  std::copy(s.block_table.begin(), s.block_table.end(), table.begin());

  models::ScoreShape shape;
  shape.batch = 1;
  shape.tokens = k;
  shape.pages_per_seq = p;
  shape.page_size = opt_.page_size;
  shape.total_pages = total_pages_;
  shape.want_argmax = argmax;
  shape.want_accept = accept;
  shape.sampling = s.sampling;
  if (hidden) shape.hidden_layers = drafter_->target_layer_ids;
  auto& program = ScoreProgram(shape);

  auto pos = Upload(positions, {1, k});
  auto tab = Upload(table, {1, p});
  auto args = TargetArgs();
  args.push_back(tokens);
  args.push_back(pos.get());
  args.push_back(tab.get());
  std::unique_ptr<pjrt::Buffer> params, uniforms;
  if (s.sampling) {
    params = SampleParams(s);
    uniforms = Uniforms(s, k + 1);
    args.push_back(params.get());
    args.push_back(uniforms.get());
    if (accept) args.push_back(s.q.get());  // the drafter's distributions for this block
  }
  auto out = Run(program, args);
  ReplaceCaches(out);
  out.erase(out.begin(), out.begin() + 2);
  return out;
}

void Engine::Draft(Sequence& s, pjrt::Buffer& feats, pjrt::Buffer& accept, int32_t rows, int32_t n_valid) {
  if (s.ctx_len + rows > s.ctx_capacity) throw std::logic_error("drafter context capacity exceeded");
  models::DraftShape shape;
  shape.ctx_capacity = s.ctx_capacity;
  shape.append_rows = rows;
  shape.block = s.block;
  shape.sampling = s.sampling;
  auto& program = DraftProgram(shape);
  auto ctx_len = Upload({s.ctx_len}, {});
  auto args = DrafterArgs(s);
  args.push_back(&feats);
  args.push_back(&accept);
  args.push_back(ctx_len.get());
  std::unique_ptr<pjrt::Buffer> params, uniforms;
  if (s.sampling) {
    params = SampleParams(s);
    uniforms = Uniforms(s, s.block);
    args.push_back(params.get());
    args.push_back(uniforms.get());
  }
  auto out = Run(program, args);
  s.ctx_k = std::move(out[0]);
  s.ctx_v = std::move(out[1]);
  s.draft = std::move(out[2]);
  if (s.sampling) s.q = std::move(out[3]);
  s.ctx_len += n_valid;
}

static std::unique_ptr<pjrt::Buffer> ZeroCtx(pjrt::Client& client, const models::DrafterConfig& d, int32_t capacity) {
  const std::vector<int64_t> dims = {d.num_layers, capacity, d.num_kv_heads, d.head_dim};
  std::vector<float> zeros(static_cast<size_t>(d.num_layers) * capacity * d.num_kv_heads * d.head_dim, 0.0f);
  return client.BufferFromHost(zeros.data(), pjrt::DType::kF32, dims);
}

StepResult Engine::Prefill(int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  Sequence& s = Get(seq);
  if (s.prefilled) throw std::logic_error("sequence " + std::to_string(seq) + " is already prefilled");
  const double t0 = device_seconds_;
  const int32_t n = static_cast<int32_t>(s.prompt.size());
  if (s.speculative) {
    s.ctx_capacity = static_cast<int32_t>(NextPow2(n + s.max_new + std::max(s.block, opt_.prefill_chunk)));
    s.ctx_k = ZeroCtx(*client_, *drafter_, s.ctx_capacity);
    s.ctx_v = ZeroCtx(*client_, *drafter_, s.ctx_capacity);
    s.ctx_len = 0;
  }
  int32_t first = -1;
  try {
    for (int32_t pos = 0; pos < n;) {
      const int32_t len = std::min(opt_.prefill_chunk, n - pos);
      const int32_t k = static_cast<int32_t>(NextPow2(len));
      const bool last_chunk = pos + len == n;
      std::vector<int32_t> tokens(k, 0), positions(k, -1);
      for (int32_t i = 0; i < len; ++i) {
        tokens[i] = s.prompt[pos + i];
        positions[i] = pos + i;
      }
      auto tok = Upload(tokens, {1, k});
      auto out = ScoreOne(s, tok.get(), positions, k, /*argmax=*/true, /*hidden=*/s.speculative, /*accept=*/false);
      if (last_chunk) {
        std::vector<int32_t> am(k);
        ToHost(*out[0], am.data(), am.size() * sizeof(int32_t));
        first = am[len - 1];
      }
      if (s.speculative) {
        // Packed like the target's accept output: [rows, ..., last token at index rows].
        std::vector<int32_t> acc(k + 1, 0);
        acc[0] = len;
        acc[len] = last_chunk ? first : 0;
        auto acc_buf = Upload(acc, {1, k + 1});
        Draft(s, *out[1], *acc_buf, k, len);
      }
      pos += len;
    }
  } catch (...) {
    pages_.Release(s.block_table);
    throw;
  }
  s.prefilled = true;
  s.committed = n;
  s.last_token = first;
  s.generated = 1;
  StepResult r;
  r.tokens = {first};
  r.device_seconds = device_seconds_ - t0;
  return r;
}

StepResult Engine::Step(int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  Sequence& s = Get(seq);
  if (!s.prefilled) throw std::logic_error("sequence " + std::to_string(seq) + " must be prefilled before step()");
  if (s.generated >= s.max_new) throw std::logic_error("sequence " + std::to_string(seq) + " already produced maxTokens");
  const double t0 = device_seconds_;
  StepResult r;
  if (!s.speculative) {
    auto tok = Upload({s.last_token}, {1, 1});
    auto out = ScoreOne(s, tok.get(), {static_cast<int32_t>(s.committed)}, 1, /*argmax=*/true, false, false);
    int32_t next = 0;
    ToHost(*out[0], &next, sizeof(next));
    s.committed += 1;
    s.last_token = next;
    r.tokens = {next};
  } else {
    const int32_t b = s.block;
    std::vector<int32_t> positions(b);
    for (int32_t i = 0; i < b; ++i) positions[i] = static_cast<int32_t>(s.committed + i);
    auto out = ScoreOne(s, s.draft.get(), positions, b, /*argmax=*/false, /*hidden=*/true, /*accept=*/true);
    std::vector<int32_t> acc(b + 1);
    ToHost(*out[1], acc.data(), acc.size() * sizeof(int32_t));  // the step's one transfer
    const int32_t n = acc[0];
    if (n < 1 || n > b) throw std::logic_error("verify returned an invalid accept count " + std::to_string(n));
    r.tokens.assign(acc.begin() + 1, acc.begin() + 1 + n);
    r.accepted_drafts = n - 1;
    r.proposed = b - 1;
    s.committed += n;
    s.last_token = r.tokens.back();
    Draft(s, *out[0], *out[1], b, n);
    pages_.ShrinkTo(s.block_table, PageAllocator::PagesFor(s.committed, opt_.page_size));
  }
  s.generated += static_cast<int64_t>(r.tokens.size());
  r.device_seconds = device_seconds_ - t0;
  return r;
}

std::vector<float> Engine::DraftLogits(const std::vector<float>& feats, int32_t rows, int32_t last_token,
                                       int32_t block_size, std::vector<int32_t>* draft) {
  if (!drafter_) throw std::invalid_argument("engine has no drafter");
  std::lock_guard<std::mutex> lock(mu_);
  RequireWeights(true);
  const int64_t width = static_cast<int64_t>(drafter_->target_layer_ids.size()) * target_.hidden_size;
  if (rows < 1 || static_cast<int64_t>(feats.size()) != rows * width)
    throw std::invalid_argument("draftLogits: features must be rows x " + std::to_string(width));
  Sequence s;
  s.block = block_size;
  const int32_t a = static_cast<int32_t>(NextPow2(rows));
  s.ctx_capacity = static_cast<int32_t>(NextPow2(a + block_size));
  s.ctx_k = ZeroCtx(*client_, *drafter_, s.ctx_capacity);
  s.ctx_v = ZeroCtx(*client_, *drafter_, s.ctx_capacity);
  std::vector<float> padded(static_cast<size_t>(a * width), 0.0f);
  std::copy(feats.begin(), feats.end(), padded.begin());
  auto fb = client_->BufferFromHost(padded.data(), pjrt::DType::kF32, {1, a, width});
  std::vector<int32_t> acc(a + 1, 0);
  acc[0] = rows;
  acc[rows] = last_token;
  auto ab = Upload(acc, {1, a + 1});

  models::DraftShape shape;
  shape.ctx_capacity = s.ctx_capacity;
  shape.append_rows = a;
  shape.block = block_size;
  shape.want_logits = true;
  auto& program = DraftProgram(shape);
  auto ctx_len = Upload({0}, {});
  auto args = DrafterArgs(s);
  args.push_back(fb.get());
  args.push_back(ab.get());
  args.push_back(ctx_len.get());
  auto out = Run(program, args);
  if (draft) {
    draft->resize(block_size);
    ToHost(*out[2], draft->data(), draft->size() * sizeof(int32_t));
  }
  std::vector<float> logits(static_cast<size_t>(block_size) * target_.vocab_size);
  ToHost(*out[3], logits.data(), logits.size() * sizeof(float));
  return logits;
}

}  // namespace dflash::engine
