// N-API wrapper of the engine: createEngine(client, config) and the Engine object's methods.
// Configs arrive as the plain objects lib/config.ts produces (camelCase); every device call runs
// in a PromiseWorker.
#include <napi.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "addon/async.h"
#include "addon/instance.h"
#include "addon/js_runtime.h"
#include "engine/engine.h"

namespace dflash::addon {
namespace {

double Num(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("engine config: '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
int32_t Int(Napi::Object o, const char* key) { return static_cast<int32_t>(Num(o, key)); }
double NumOr(Napi::Object o, const char* key, double dflt) { return o.Get(key).IsNumber() ? Num(o, key) : dflt; }
bool Bool(Napi::Object o, const char* key) { return o.Get(key).ToBoolean().Value(); }
std::string Str(Napi::Object o, const char* key, const std::string& dflt = "") {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : dflt;
}

pjrt::DType WeightDType(Napi::Object o) {
  const std::string s = Str(o, "weightDtype", "f32");
  if (s == "f32") return pjrt::DType::kF32;
  if (s == "bf16") return pjrt::DType::kBF16;
  if (s == "f16") return pjrt::DType::kF16;
  throw Napi::TypeError::New(o.Env(), "engine config: weightDtype must be f32, bf16 or f16");
}

// `ropeLlama3: {factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings} | null`.
models::RopeLlama3 ParseRopeLlama3(Napi::Object o) {
  models::RopeLlama3 r;
  Napi::Value v = o.Get("ropeLlama3");
  if (!v.IsObject()) return r;
  auto ro = v.As<Napi::Object>();
  r.enabled = true;
  r.factor = Num(ro, "factor");
  r.low_freq_factor = Num(ro, "lowFreqFactor");
  r.high_freq_factor = Num(ro, "highFreqFactor");
  r.original_max_position_embeddings = Int(ro, "originalMaxPositionEmbeddings");
  return r;
}

models::TargetConfig ParseTarget(Napi::Object o) {
  models::TargetConfig c;
  c.family = Str(o, "family", "qwen3");
  c.vocab_size = Int(o, "vocabSize");
  c.hidden_size = Int(o, "hiddenSize");
  c.intermediate_size = Int(o, "intermediateSize");
  c.num_layers = Int(o, "numLayers");
  c.num_heads = Int(o, "numHeads");
  c.num_kv_heads = Int(o, "numKvHeads");
  c.head_dim = Int(o, "headDim");
  c.rms_norm_eps = static_cast<float>(Num(o, "rmsNormEps"));
  c.rope_theta = Num(o, "ropeTheta");
  c.qk_norm = Bool(o, "qkNorm");
  c.tie_word_embeddings = Bool(o, "tieWordEmbeddings");
  c.weight_dtype = WeightDType(o);
  c.rope_llama3 = ParseRopeLlama3(o);
  return c;
}

models::DrafterConfig ParseDrafter(Napi::Object o) {
  models::DrafterConfig c;
  c.num_layers = Int(o, "numLayers");
  c.hidden_size = Int(o, "hiddenSize");
  c.intermediate_size = Int(o, "intermediateSize");
  c.num_heads = Int(o, "numHeads");
  c.num_kv_heads = Int(o, "numKvHeads");
  c.head_dim = Int(o, "headDim");
  c.rms_norm_eps = static_cast<float>(Num(o, "rmsNormEps"));
  c.rope_theta = Num(o, "ropeTheta");
  c.block_size = Int(o, "blockSize");
  c.mask_token_id = Int(o, "maskTokenId");
  c.input_embedding_scale = static_cast<float>(NumOr(o, "inputEmbeddingScale", 1.0));
  c.weight_dtype = WeightDType(o);
  c.rope_llama3 = ParseRopeLlama3(o);
  Napi::Value ids = o.Get("targetLayerIds");
  if (!ids.IsArray()) throw Napi::TypeError::New(o.Env(), "engine config: drafter.targetLayerIds must be an array");
  auto a = ids.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) c.target_layer_ids.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  return c;
}

Napi::Object StepToJs(Napi::Env env, const engine::StepResult& r) {
  auto o = Napi::Object::New(env);
  auto t = Napi::Int32Array::New(env, r.tokens.size());
  for (size_t i = 0; i < r.tokens.size(); ++i) t[i] = r.tokens[i];
  o.Set("tokens", t);
  o.Set("acceptedDrafts", r.accepted_drafts);
  o.Set("proposed", r.proposed);
  o.Set("deviceSeconds", r.device_seconds);
  return o;
}

Napi::Float32Array ToF32(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
  return a;
}

std::vector<int32_t> Int32s(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

class JsEngine : public Napi::ObjectWrap<JsEngine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Engine", {
        InstanceMethod<&JsEngine::LoadWeights>("loadWeights"),
        InstanceMethod<&JsEngine::StartSequence>("startSequence"),
        InstanceMethod<&JsEngine::Prefill>("prefill"),
        InstanceMethod<&JsEngine::Step>("step"),
        InstanceMethod<&JsEngine::FinishSequence>("finishSequence"),
        InstanceMethod<&JsEngine::ScoreLogits>("scoreLogits"),
        InstanceMethod<&JsEngine::DraftLogits>("draftLogits"),
        InstanceMethod<&JsEngine::Stats>("stats"),
        InstanceMethod<&JsEngine::TimeVerify>("timeVerify"),
        InstanceMethod<&JsEngine::TimeDraft>("timeDraft"),
        InstanceMethod<&JsEngine::Dispose>("dispose"),
    });
  }
  explicit JsEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsEngine>(info) {}
  ~JsEngine() override {
    if (engine_) --g_live_engines;
  }
  void Set(std::shared_ptr<engine::Engine> e) {
    engine_ = std::move(e);
    ++g_live_engines;
  }

 private:
  std::shared_ptr<engine::Engine> Get(Napi::Env env) {
    if (!engine_) throw Napi::Error::New(env, "Engine is disposed");
    return engine_;
  }

  Napi::Value LoadWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto eng = Get(env);
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
      throw Napi::TypeError::New(env, "loadWeights(which: 'target'|'drafter', tensors: TensorSource[], onProgress?)");
    const std::string which = info[0].As<Napi::String>().Utf8Value();
    if (which != "target" && which != "drafter") throw Napi::TypeError::New(env, "loadWeights: which must be 'target' or 'drafter'");
    std::vector<engine::TensorSource> sources;
    auto arr = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      engine::TensorSource s;
      s.name = Str(o, "name");
      s.file = Str(o, "file");
      s.offset = static_cast<int64_t>(Num(o, "offset"));
      s.nbytes = static_cast<int64_t>(Num(o, "nbytes"));
      s.dtype = Str(o, "dtype");
      auto shape = o.Get("shape").As<Napi::Array>();
      for (uint32_t k = 0; k < shape.Length(); ++k) s.shape.push_back(shape.Get(k).As<Napi::Number>().Int64Value());
      sources.push_back(std::move(s));
    }
    // The upload runs on its own thread; progress reaches JS through a thread-safe function,
    // and the promise settles in that function's finalizer, which runs only after every queued
    // progress call has been delivered (so no progress event arrives after the promise).
    struct LoadState {
      explicit LoadState(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
      Napi::Promise::Deferred deferred;
      std::string error, code;
    };
    auto* state = new LoadState(env);
    Napi::Promise promise = state->deferred.Promise();
    Napi::Function fn = info.Length() > 2 && info[2].IsFunction()
                            ? info[2].As<Napi::Function>()
                            : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
    auto tsfn = Napi::ThreadSafeFunction::New(
        env, fn, "dflash-load", 0, 1, state, [](Napi::Env env, LoadState* st) {
          if (st->error.empty()) {
            st->deferred.Resolve(env.Undefined());
          } else {
            Napi::Error err = Napi::Error::New(env, st->error);
            if (!st->code.empty()) err.Set("code", Napi::String::New(env, st->code));
            st->deferred.Reject(err.Value());
          }
          delete st;
        });
    const bool drafter = which == "drafter";
    std::thread([eng, sources, drafter, tsfn, state]() mutable {
      auto cb = [&tsfn](const engine::LoadProgress& p) {
        auto* copy = new engine::LoadProgress(p);
        napi_status st = tsfn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, engine::LoadProgress* p) {
          auto o = Napi::Object::New(env);
          o.Set("tensors", static_cast<double>(p->tensors));
          o.Set("totalTensors", static_cast<double>(p->total_tensors));
          o.Set("bytes", static_cast<double>(p->bytes));
          o.Set("totalBytes", static_cast<double>(p->total_bytes));
          delete p;
          fn.Call({o});
        });
        if (st != napi_ok) delete copy;
      };
      try {
        eng->LoadWeights(drafter, sources, cb);
      } catch (const pjrt::PjrtError& e) {
        state->error = e.what();
        state->code = e.code_name();
      } catch (const std::exception& e) {
        state->error = e.what();
      } catch (...) {
        state->error = "dflash: unknown native error while loading weights";
      }
      tsfn.Release();
    }).detach();
    return promise;
  }

  Napi::Value StartSequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto eng = Get(env);
    auto prompt = Int32s(env, info[0], "startSequence: prompt");
    if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "startSequence(prompt, options)");
    auto o = info[1].As<Napi::Object>();
    engine::SamplingParams sp;
    sp.temperature = static_cast<float>(NumOr(o, "temperature", 0));
    sp.top_p = static_cast<float>(NumOr(o, "topP", 1));
    sp.top_k = static_cast<int32_t>(NumOr(o, "topK", 0));
    sp.seed = static_cast<uint64_t>(static_cast<int64_t>(NumOr(o, "seed", 0)));
    return Guard(env, [&]() -> Napi::Value {
      const int64_t id = eng->StartSequence(std::move(prompt), Int(o, "maxNewTokens"), Bool(o, "speculative"),
                                            static_cast<int32_t>(NumOr(o, "blockSize", 1)), sp);
      return Napi::Number::New(env, static_cast<double>(id));
    });
  }

  Napi::Value RunStep(const Napi::CallbackInfo& info, bool prefill) {
    Napi::Env env = info.Env();
    auto eng = Get(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "expected a sequence id");
    const int64_t seq = info[0].As<Napi::Number>().Int64Value();
    auto r = std::make_shared<engine::StepResult>();
    return PromiseWorker::Run(
        env, [eng, seq, r, prefill] { *r = prefill ? eng->Prefill(seq) : eng->Step(seq); },
        [r](Napi::Env env) { return StepToJs(env, *r); });
  }
  Napi::Value Prefill(const Napi::CallbackInfo& info) { return RunStep(info, true); }
  Napi::Value Step(const Napi::CallbackInfo& info) { return RunStep(info, false); }

  Napi::Value FinishSequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return env.Undefined();  // disposing the engine already freed everything
    return Guard(env, [&]() -> Napi::Value {
      engine_->FinishSequence(info[0].As<Napi::Number>().Int64Value());
      return env.Undefined();
    });
  }

  Napi::Value ScoreLogits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto eng = Get(env);
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "scoreLogits(batch: Int32Array[], options?)");
    std::vector<std::vector<int32_t>> batch;
    auto arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) batch.push_back(Int32s(env, arr.Get(i), "scoreLogits: each sequence"));
    std::vector<int32_t> layers;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Value h = info[1].As<Napi::Object>().Get("hiddenLayers");
      if (h.IsArray())
        for (uint32_t i = 0; i < h.As<Napi::Array>().Length(); ++i) layers.push_back(h.As<Napi::Array>().Get(i).As<Napi::Number>().Int32Value());
    }
    auto logits = std::make_shared<std::vector<std::vector<float>>>();
    auto hidden = std::make_shared<std::vector<std::vector<float>>>();
    return PromiseWorker::Run(
        env, [eng, batch, layers, logits, hidden] { *logits = eng->ScoreLogits(batch, layers, hidden.get()); },
        [logits, hidden](Napi::Env env) {
          auto o = Napi::Object::New(env);
          auto l = Napi::Array::New(env, logits->size());
          for (size_t i = 0; i < logits->size(); ++i) l.Set(i, ToF32(env, (*logits)[i]));
          o.Set("logits", l);
          if (!hidden->empty()) {
            auto h = Napi::Array::New(env, hidden->size());
            for (size_t i = 0; i < hidden->size(); ++i) h.Set(i, ToF32(env, (*hidden)[i]));
            o.Set("hidden", h);
          }
          return o;
        });
  }

  Napi::Value DraftLogits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto eng = Get(env);
    if (info.Length() < 4 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "draftLogits(features: Float32Array, rows, lastToken, blockSize)");
    auto fa = info[0].As<Napi::Float32Array>();
    std::vector<float> feats(fa.Data(), fa.Data() + fa.ElementLength());
    const int32_t rows = info[1].As<Napi::Number>().Int32Value();
    const int32_t last = info[2].As<Napi::Number>().Int32Value();
    const int32_t block = info[3].As<Napi::Number>().Int32Value();
    auto logits = std::make_shared<std::vector<float>>();
    auto draft = std::make_shared<std::vector<int32_t>>();
    return PromiseWorker::Run(
        env, [eng, feats, rows, last, block, logits, draft] { *logits = eng->DraftLogits(feats, rows, last, block, draft.get()); },
        [logits, draft](Napi::Env env) {
          auto o = Napi::Object::New(env);
          o.Set("logits", ToF32(env, *logits));
          auto d = Napi::Int32Array::New(env, draft->size());
          for (size_t i = 0; i < draft->size(); ++i) d[i] = (*draft)[i];
          o.Set("draft", d);
          return o;
        });
  }

  Napi::Value TimeProgram(const Napi::CallbackInfo& info, bool verify) {
    Napi::Env env = info.Env();
    auto eng = Get(env);
    if (info.Length() < 3) throw Napi::TypeError::New(env, "expected (size, context, reps)");
    const int32_t size = info[0].As<Napi::Number>().Int32Value();
    const int32_t context = info[1].As<Napi::Number>().Int32Value();
    const int32_t reps = info[2].As<Napi::Number>().Int32Value();
    auto secs = std::make_shared<double>(0);
    return PromiseWorker::Run(
        env, [eng, size, context, reps, secs, verify] {
          *secs = verify ? eng->TimeVerify(size, context, reps) : eng->TimeDraft(size, context, reps);
        },
        [secs](Napi::Env env) { return Napi::Number::New(env, *secs); });
  }
  Napi::Value TimeVerify(const Napi::CallbackInfo& info) { return TimeProgram(info, true); }
  Napi::Value TimeDraft(const Napi::CallbackInfo& info) { return TimeProgram(info, false); }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto s = Get(env)->Stats();
    auto o = Napi::Object::New(env);
    o.Set("hostTransfers", static_cast<double>(s.host_transfers));
    o.Set("executions", static_cast<double>(s.executions));
    o.Set("compiles", static_cast<double>(s.compiles));
    o.Set("diskCacheHits", static_cast<double>(s.disk_hits));
    o.Set("cacheCopies", static_cast<double>(s.cache_copies));
    o.Set("freePages", s.free_pages);
    o.Set("totalPages", s.total_pages);
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (engine_) {
      engine_.reset();
      --g_live_engines;
    }
    return info.Env().Undefined();
  }

  std::shared_ptr<engine::Engine> engine_;
};

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& inst = Instance::Get(env);
  if (info.Length() < 2 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(inst.client_ctor.Value()) ||
      !info[1].IsObject())
    throw Napi::TypeError::New(env, "createEngine(client: Client, config: object)");
  auto client = JsClient::Unwrap(info[0].As<Napi::Object>())->Get(env);
  auto cfg = info[1].As<Napi::Object>();
  if (!cfg.Get("target").IsObject()) throw Napi::TypeError::New(env, "createEngine: config.target is required");
  // Configs are read here, on the JS thread; the engine (which uploads its KV cache) is built
  // on a worker.
  auto target = std::make_shared<models::TargetConfig>(ParseTarget(cfg.Get("target").As<Napi::Object>()));
  auto drafter = std::make_shared<std::optional<models::DrafterConfig>>();
  if (cfg.Get("drafter").IsObject()) *drafter = ParseDrafter(cfg.Get("drafter").As<Napi::Object>());
  engine::EngineOptions opt;
  opt.page_size = static_cast<int32_t>(NumOr(cfg, "pageSize", 16));
  opt.max_seq_len = static_cast<int32_t>(NumOr(cfg, "maxSeqLen", 2048));
  opt.max_sequences = static_cast<int32_t>(NumOr(cfg, "maxSequences", 4));
  opt.prefill_chunk = static_cast<int32_t>(NumOr(cfg, "prefillChunk", 128));
  opt.cache_dir = Str(cfg, "cacheDir");
  auto out = std::make_shared<std::shared_ptr<engine::Engine>>();
  return PromiseWorker::Run(
      env, [client, target, drafter, opt, out] { *out = std::make_shared<engine::Engine>(client, *target, *drafter, opt); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object obj = Instance::Get(env).engine_ctor.New({});
        JsEngine::Unwrap(obj)->Set(std::move(*out));
        return obj;
      });
}

}  // namespace

void InitEngine(Napi::Env env, Napi::Object exports) {
  Instance::Get(env).engine_ctor = Napi::Persistent(JsEngine::Init(env));
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine));
}

}  // namespace dflash::addon
