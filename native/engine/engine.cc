// Engine set-up, weights, sequence bookkeeping and the oracle entry points; the decode and
// speculative steps live in speculative.cc.
#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "engine/sequence.h"

namespace dflash::engine {

int64_t NextPow2(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

namespace {
int32_t PagesPerSequence(const EngineOptions& o, int32_t max_block) {
  return PageAllocator::PagesFor(o.max_seq_len + std::max(max_block, o.prefill_chunk), o.page_size);
}
}  // namespace

Engine::Engine(std::shared_ptr<pjrt::Client> client, models::TargetConfig target,
               std::optional<models::DrafterConfig> drafter, EngineOptions options)
    : client_(std::move(client)),
      target_(std::move(target)),
      drafter_(std::move(drafter)),
      opt_(options),
      programs_(client_, options.cache_dir),
      pages_(1 + std::max(1, options.max_sequences) *
                     PagesPerSequence(options, drafter_ ? drafter_->block_size : 1)),
      total_pages_(pages_.total_pages()) {
  if (opt_.page_size < 1 || (opt_.page_size & (opt_.page_size - 1)) != 0)
    throw std::invalid_argument("pageSize must be a power of two, got " + std::to_string(opt_.page_size));
  if (opt_.prefill_chunk < 1 || (opt_.prefill_chunk & (opt_.prefill_chunk - 1)) != 0)
    throw std::invalid_argument("prefillChunk must be a power of two");
  if (opt_.max_seq_len < 2) throw std::invalid_argument("maxSeqLen must be at least 2");
  // The whole KV cache lives on the device from the start: (L, N, S, kvh, hd), f32.
  const std::vector<int64_t> dims = {target_.num_layers, total_pages_, opt_.page_size, target_.num_kv_heads,
                                     target_.head_dim};
  int64_t count = 1;
  for (auto d : dims) count *= d;
  std::vector<float> zeros(static_cast<size_t>(count), 0.0f);
  k_cache_ = client_->BufferFromHost(zeros.data(), pjrt::DType::kF32, dims);
  v_cache_ = client_->BufferFromHost(zeros.data(), pjrt::DType::kF32, dims);
}

Engine::~Engine() = default;

void Engine::LoadWeights(bool drafter, const std::vector<TensorSource>& sources,
                         const std::function<void(const LoadProgress&)>& progress) {
  if (drafter && !drafter_) throw std::invalid_argument("engine was created without a drafter config");
  auto specs = drafter ? models::DrafterWeightSpecs(*drafter_) : models::TargetWeightSpecs(target_);
  auto buffers = UploadWeights(*client_, specs, sources, progress);
  std::lock_guard<std::mutex> lock(mu_);
  (drafter ? drafter_weights_ : target_weights_) = std::move(buffers);
}

void Engine::RequireWeights(bool speculative) const {
  if (target_weights_.empty()) throw std::logic_error("target weights are not loaded");
  if (speculative && drafter_weights_.empty()) throw std::logic_error("drafter weights are not loaded");
}

Engine::Sequence& Engine::Get(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::invalid_argument("unknown or finished sequence " + std::to_string(seq));
  return *it->second;
}

int64_t Engine::StartSequence(std::vector<int32_t> prompt, int32_t max_new_tokens, bool speculative,
                              int32_t block_size, SamplingParams sampling) {
  if (!(sampling.temperature >= 0.0f)) throw std::invalid_argument("temperature must be >= 0");
  if (!(sampling.top_p > 0.0f && sampling.top_p <= 1.0f)) throw std::invalid_argument("topP must be in (0, 1]");
  if (sampling.top_k < 0) throw std::invalid_argument("topK must be >= 0");
  if (prompt.empty()) throw std::invalid_argument("prompt is empty: at least one token is needed");
  for (int32_t t : prompt)
    if (t < 0 || t >= target_.vocab_size)
      throw std::invalid_argument("prompt token " + std::to_string(t) + " is outside the vocabulary (0.." +
                                  std::to_string(target_.vocab_size - 1) + ")");
  if (max_new_tokens < 1) throw std::invalid_argument("maxTokens must be at least 1");
  if (speculative && !drafter_) throw std::invalid_argument("speculative decoding needs a drafter");
  if (speculative && (block_size < 2 || block_size > drafter_->block_size))
    throw std::invalid_argument("blockSize must be in 2.." + std::to_string(drafter_->block_size) + ", got " +
                                std::to_string(block_size));
  const int64_t need = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  if (need > opt_.max_seq_len)
    throw std::invalid_argument("prompt (" + std::to_string(prompt.size()) + " tokens) + maxTokens (" +
                                std::to_string(max_new_tokens) + ") exceeds maxSeqLen " + std::to_string(opt_.max_seq_len));
  std::lock_guard<std::mutex> lock(mu_);
  RequireWeights(speculative);
  auto s = std::make_unique<Sequence>();
  s->prompt = std::move(prompt);
  s->max_new = max_new_tokens;
  s->speculative = speculative;
  s->block = speculative ? block_size : 1;
  s->sampling = sampling.temperature > 0.0f;
  s->params = sampling;
  s->rng = sampling.seed ^ 0x9e3779b97f4a7c15ull;
  const int64_t id = next_seq_++;
  seqs_[id] = std::move(s);
  return id;
}

void Engine::FinishSequence(int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;  // finishing twice is harmless
  pages_.Release(it->second->block_table);
  seqs_.erase(it);
}

EngineStats Engine::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats st;
  st.host_transfers = host_transfers_;
  st.executions = executions_;
  st.compiles = programs_.compiles();
  st.disk_hits = programs_.disk_hits();
  st.cache_copies = cache_copies_;
  st.free_pages = pages_.free_pages();
  st.total_pages = total_pages_ - 1;
  return st;
}

std::unique_ptr<pjrt::Buffer> Engine::SampleParams(const Sequence& s) {
  const float p[3] = {s.params.temperature, s.params.top_p, static_cast<float>(s.params.top_k)};
  return client_->BufferFromHost(p, pjrt::DType::kF32, {3});
}

std::unique_ptr<pjrt::Buffer> Engine::Uniforms(Sequence& s, int64_t n) {
  std::vector<float> u(static_cast<size_t>(n));
  for (auto& x : u) {
    // splitmix64: a counter-based generator, so a seed fixes every draw of the sequence.
    uint64_t z = (s.rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    x = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 random bits
  }
  return client_->BufferFromHost(u.data(), pjrt::DType::kF32, {1, n});
}

pjrt::LoadedExecutable& Engine::ScoreProgram(const models::ScoreShape& s) {
  std::string key = "score b" + std::to_string(s.batch) + " k" + std::to_string(s.tokens) + " p" +
                    std::to_string(s.pages_per_seq) + " s" + std::to_string(s.page_size) + " n" +
                    std::to_string(s.total_pages) + (s.want_logits ? " logits" : "") + (s.want_argmax ? " argmax" : "") +
                    (s.want_accept ? " accept" : "") + (s.sampling ? " sample" : "") + " h";
  for (int32_t l : s.hidden_layers) key += "," + std::to_string(l);
  return programs_.Get(key, [&] { return models::BuildTargetScore(target_, s).mlir; });
}

pjrt::LoadedExecutable& Engine::DraftProgram(const models::DraftShape& s) {
  const std::string key = "draft c" + std::to_string(s.ctx_capacity) + " a" + std::to_string(s.append_rows) + " b" +
                          std::to_string(s.block) + (s.want_logits ? " logits" : "") + (s.sampling ? " sample" : "");
  return programs_.Get(key, [&] { return models::BuildDrafter(*drafter_, target_, s).mlir; });
}

Engine::Buffers Engine::Run(pjrt::LoadedExecutable& exe, const std::vector<pjrt::Buffer*>& args) {
  const auto t0 = std::chrono::steady_clock::now();
  auto out = exe.Execute(args, {});
  device_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++executions_;
  return out;
}

std::unique_ptr<pjrt::Buffer> Engine::Upload(const std::vector<int32_t>& v, std::vector<int64_t> dims) {
  return client_->BufferFromHost(v.data(), pjrt::DType::kS32, dims);
}

void Engine::ToHost(pjrt::Buffer& b, void* dst, size_t bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  b.ToHost(dst, bytes);
  device_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++host_transfers_;
}

void Engine::ReplaceCaches(Buffers& out) {
  if (!k_cache_->donated() || !v_cache_->donated()) ++cache_copies_;
  k_cache_ = std::move(out[0]);
  v_cache_ = std::move(out[1]);
}

std::vector<pjrt::Buffer*> Engine::TargetArgs() {
  std::vector<pjrt::Buffer*> args;
  for (auto& w : target_weights_) args.push_back(w.get());
  args.push_back(k_cache_.get());
  args.push_back(v_cache_.get());
  return args;
}

std::vector<std::vector<float>> Engine::ScoreLogits(const std::vector<std::vector<int32_t>>& batch,
                                                    const std::vector<int32_t>& hidden_layers,
                                                    std::vector<std::vector<float>>* hidden) {
  if (batch.empty()) throw std::invalid_argument("scoreLogits: empty batch");
  std::lock_guard<std::mutex> lock(mu_);
  RequireWeights(false);
  const int32_t bt = static_cast<int32_t>(batch.size());
  size_t longest = 0;
  for (auto& b : batch) {
    if (b.empty()) throw std::invalid_argument("scoreLogits: empty sequence in batch");
    longest = std::max(longest, b.size());
  }
  const int32_t k = static_cast<int32_t>(NextPow2(static_cast<int64_t>(longest)));
  const int32_t p = static_cast<int32_t>(NextPow2(PageAllocator::PagesFor(static_cast<int64_t>(longest), opt_.page_size)));
  std::vector<std::vector<int32_t>> tables(bt);
  std::vector<int32_t> tokens(bt * k, 0), positions(bt * k, -1), table(bt * p, 0);
  std::vector<std::vector<float>> logits(bt);
  try {
    for (int32_t b = 0; b < bt; ++b) {
      pages_.GrowTo(tables[b], PageAllocator::PagesFor(static_cast<int64_t>(batch[b].size()), opt_.page_size));
      for (size_t i = 0; i < batch[b].size(); ++i) {
        tokens[b * k + i] = batch[b][i];
        positions[b * k + i] = static_cast<int32_t>(i);
      }
      std::copy(tables[b].begin(), tables[b].end(), table.begin() + b * p);
    }
    models::ScoreShape shape;
    shape.batch = bt;
    shape.tokens = k;
    shape.pages_per_seq = p;
    shape.page_size = opt_.page_size;
    shape.total_pages = total_pages_;
    shape.want_logits = true;
    shape.hidden_layers = hidden_layers;
    auto& program = ScoreProgram(shape);
    auto tok = Upload(tokens, {bt, k}), pos = Upload(positions, {bt, k}), tab = Upload(table, {bt, p});
    auto args = TargetArgs();
    args.push_back(tok.get());
    args.push_back(pos.get());
    args.push_back(tab.get());
    auto out = Run(program, args);
    ReplaceCaches(out);
    const int64_t v = target_.vocab_size;
    std::vector<float> all(static_cast<size_t>(bt) * k * v);
    ToHost(*out[2], all.data(), all.size() * sizeof(float));
    for (int32_t b = 0; b < bt; ++b)
      logits[b].assign(all.begin() + static_cast<int64_t>(b) * k * v,
                       all.begin() + static_cast<int64_t>(b) * k * v + static_cast<int64_t>(batch[b].size()) * v);
    if (hidden && !hidden_layers.empty()) {
      const int64_t width = static_cast<int64_t>(hidden_layers.size()) * target_.hidden_size;
      std::vector<float> h(static_cast<size_t>(bt) * k * width);
      ToHost(*out[3], h.data(), h.size() * sizeof(float));
      hidden->assign(bt, {});
      for (int32_t b = 0; b < bt; ++b)
        (*hidden)[b].assign(h.begin() + b * k * width, h.begin() + b * k * width + static_cast<int64_t>(batch[b].size()) * width);
    }
  } catch (...) {
    for (auto& t : tables) pages_.Release(t);
    throw;
  }
  for (auto& t : tables) pages_.Release(t);
  return logits;
}

}  // namespace dflash::engine
