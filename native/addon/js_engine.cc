// N-API wrapper of the engine: see js_engine.h.
#include "addon/js_engine.h"

#include <atomic>
#include <cmath>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "addon/async.h"
#include "addon/async_promise.h"
#include "addon/instance.h"
#include "addon/js_config.h"
#include "addon/js_engine_views.h"
#include "addon/js_runtime.h"
#include "engine/dtype_policy.h"

namespace dflash::addon {

// One payload of the events function: a batch of sequence events or one program event.
struct EventPayload {
  std::vector<engine::SequenceEvent> sequences;
  std::optional<engine::ProgramEvent> program;
};

struct JsEngine::Shared {
  Napi::ThreadSafeFunction events;   // created unref'd; ref'd while sequences are in flight
  int64_t in_flight = 0;             // JS thread only
  std::mutex mu;                     // guards load
  std::shared_ptr<AsyncPromise> load;  // while loading, program events go to load()'s progress
};

namespace {

// Engines are torn down on threads of their own (joining a scheduler waits for its iteration).
// Those still running are joined when the Node environment shuts down, so a process that exits
// right after dispose() never unloads the plugin under a thread still freeing device memory.
// Finished ones are joined at the next Spawn: an unjoined thread keeps its 8 MB stack mapped,
// one more per engine ever disposed.
class Teardowns {
 public:
  static Teardowns& Get() {
    static Teardowns* t = new Teardowns();  // never destroyed: threads may outlive static destructors
    return *t;
  }
  void Spawn(std::function<void()> work) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->done->load()) {
        it->thread.join();  // returning: waits for its captures to be destroyed, no longer
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back({std::thread([work = std::move(work), done] {
                          work();
                          done->store(true);
                        }),
                        done});
  }
  void JoinAll() {
    std::vector<Entry> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads)
      if (t.thread.joinable()) t.thread.join();
  }

 private:
  struct Entry {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mu_;
  std::vector<Entry> threads_;
};

// An engine's weights, KV pool, executables and XLA's scratch are freed into glibc's malloc
// arenas, which keep the free chunks: 30 load/close cycles that load their programs from the
// disk cache grew RSS 241 -> 954 MB with 9 MB in use (mallinfo2: the rest free chunks, mostly in
// the 64 MB heaps of non-main arenas). malloc_trim hands them back (10-20 ms), RSS stays flat.
void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}


// A non-negative integer JS keeps exactly (offsets and sizes past 2^53 cannot come from a header).
bool IsCount(const Napi::Value& v) {
  if (!v.IsNumber()) return false;
  const double x = v.As<Napi::Number>().DoubleValue();
  return std::isfinite(x) && x >= 0 && x <= 9007199254740991.0 && x == std::floor(x);
}

// Tensor sources from JS, every field checked (a NaN or fractional offset must not reach the
// int64 conversion): errors name the entry and the field.
std::vector<engine::TensorSource> Sources(Napi::Env env, Napi::Value v) {
  std::vector<engine::TensorSource> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(env, "load: tensor sources must be an array");
  auto arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const Napi::Value item = arr.Get(i);
    const std::string at = "load: tensor source " + std::to_string(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, at + " must be an object {name, file, offset, nbytes, dtype, shape}");
    auto o = item.As<Napi::Object>();
    for (const char* key : {"name", "file", "dtype"})
      if (!o.Get(key).IsString()) throw Napi::TypeError::New(env, at + ": '" + key + "' must be a string");
    engine::TensorSource s;
    s.name = o.Get("name").As<Napi::String>().Utf8Value();
    const std::string what = at + " (" + s.name + ")";
    for (const char* key : {"offset", "nbytes"})
      if (!IsCount(o.Get(key))) throw Napi::TypeError::New(env, what + ": '" + key + "' must be a non-negative integer");
    s.file = o.Get("file").As<Napi::String>().Utf8Value();
    s.offset = static_cast<int64_t>(o.Get("offset").As<Napi::Number>().DoubleValue());
    s.nbytes = static_cast<int64_t>(o.Get("nbytes").As<Napi::Number>().DoubleValue());
    s.dtype = o.Get("dtype").As<Napi::String>().Utf8Value();
    const Napi::Value shape = o.Get("shape");
    if (!shape.IsArray()) throw Napi::TypeError::New(env, what + ": 'shape' must be an array");
    auto dims = shape.As<Napi::Array>();
    for (uint32_t k = 0; k < dims.Length(); ++k) {
      if (!IsCount(dims.Get(k))) throw Napi::TypeError::New(env, what + ": 'shape' must hold non-negative integers");
      s.shape.push_back(static_cast<int64_t>(dims.Get(k).As<Napi::Number>().DoubleValue()));
    }
    // GGUF sources (lib/gguf.ts): where the file's data section starts, and rows to reorder.
    for (const char* key : {"dataStart", "ropeHeads"}) {
      const Napi::Value x = o.Get(key);
      if (x.IsUndefined()) continue;
      if (!IsCount(x)) throw Napi::TypeError::New(env, what + ": '" + key + "' must be a non-negative integer");
      (std::string(key) == "dataStart" ? s.data_start : s.rope_heads) = static_cast<int64_t>(x.As<Napi::Number>().DoubleValue());
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Queues a payload for the JS thread's onEvents(kind, data).
void PostEvents(const std::shared_ptr<JsEngine::Shared>& shared, EventPayload* payload) {
  const napi_status st = shared->events.NonBlockingCall(payload, [shared](Napi::Env env, Napi::Function fn, EventPayload* p) {
    std::unique_ptr<EventPayload> own(p);
    if (p->program) {
      fn.Call({Napi::String::New(env, "program"), ProgramEventToJs(env, *p->program)});
      return;
    }
    for (const auto& e : p->sequences)
      if (!e.finish.empty() && shared->in_flight > 0 && --shared->in_flight == 0) shared->events.Unref(env);
    fn.Call({Napi::String::New(env, "tokens"), SequenceEventsToJs(env, p->sequences)});
  });
  if (st != napi_ok) delete payload;
}

}  // namespace

Napi::Function JsEngine::Init(Napi::Env env) {
  return DefineClass(env, "Engine", {
      InstanceMethod<&JsEngine::Load>("load"),
      InstanceMethod<&JsEngine::Submit>("submit"),
      InstanceMethod<&JsEngine::Cancel>("cancel"),
      InstanceMethod<&JsEngine::Stats>("stats"),
      InstanceMethod<&JsEngine::Precompile>("precompile"),
      InstanceMethod<&JsEngine::Dispose>("dispose"),
  });
}

JsEngine::JsEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsEngine>(info) {}

JsEngine::~JsEngine() {
  if (engine_) Teardown(nullptr);
}

std::shared_ptr<engine::Engine> JsEngine::Get(Napi::Env env) const {
  if (!engine_) throw Napi::Error::New(env, "Engine is disposed");
  return engine_;
}

void JsEngine::Teardown(std::function<void()> after) {
  auto eng = std::move(engine_);
  auto shared = shared_;
  eng->Stop();
  Teardowns::Get().Spawn([eng = std::move(eng), shared, after = std::move(after)]() mutable {
    eng.reset();  // joins the scheduler thread, frees the device memory
    ReleaseFreedMemory();
    shared->events.Release();
    --g_live_engines;
    if (after) after();
  });
}

Napi::Value JsEngine::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto eng = Get(env);
  auto target = Sources(env, info[0]);
  auto drafter = Sources(env, info[1]);
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto p = AsyncPromise::Create(env, cb, "dflash-load");
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->load = p;
  }
  auto shared = shared_;
  eng->Load(
      std::move(target), std::move(drafter),
      [p](const engine::LoadProgress& lp) {
        p->Progress([lp](Napi::Env env, Napi::Function fn) {
          auto o = Napi::Object::New(env);
          o.Set("phase", "weights");
          o.Set("model", lp.model);
          o.Set("tensors", static_cast<double>(lp.tensors));
          o.Set("totalTensors", static_cast<double>(lp.total_tensors));
          o.Set("bytes", static_cast<double>(lp.bytes));
          o.Set("totalBytes", static_cast<double>(lp.total_bytes));
          fn.Call({o});
        });
      },
      [shared](const engine::ProgramEvent& e) {
        std::shared_ptr<AsyncPromise> load;
        {
          std::lock_guard<std::mutex> lock(shared->mu);
          load = shared->load;
        }
        if (load) {
          load->Progress([e](Napi::Env env, Napi::Function fn) { fn.Call({ProgramEventToJs(env, e)}); });
          return;
        }
        PostEvents(shared, new EventPayload{{}, e});
      },
      [p, shared](const engine::LoadResult& r, const std::string& error) {
        {
          std::lock_guard<std::mutex> lock(shared->mu);
          shared->load.reset();
        }
        if (!error.empty()) return p->Reject(error);
        auto unused = r.unused_tensors;
        p->Resolve([unused](Napi::Env env) -> Napi::Value {
          auto o = Napi::Object::New(env);
          auto a = Napi::Array::New(env, unused.size());
          for (size_t i = 0; i < unused.size(); ++i) a.Set(i, unused[i]);
          o.Set("unusedTensors", a);
          return o;
        });
      });
  return p->promise();
}

// precompile({ context }, onProgress?) -> Promise<{ programs }>: onProgress({
// phase: 'precompile', done, total }) after each program (compile and disk-cache events come as
// the engine's 'program' events).
Napi::Value JsEngine::Precompile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto eng = Get(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "precompile({ context }, onProgress?)");
  auto o = info[0].As<Napi::Object>();
  const int64_t context = o.Get("context").IsNumber() ? o.Get("context").As<Napi::Number>().Int64Value() : 0;
  if (context < 1) throw Napi::RangeError::New(env, "precompile: context must be a number of tokens >= 1");
  Napi::Function cb = info.Length() > 1 && info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function();
  auto p = AsyncPromise::Create(env, cb, "dflash-precompile");
  eng->Precompile(
      context,
      [p](size_t done, size_t total) {
        p->Progress([done, total](Napi::Env env, Napi::Function fn) {
          auto ev = Napi::Object::New(env);
          ev.Set("phase", "precompile");
          ev.Set("done", static_cast<double>(done));
          ev.Set("total", static_cast<double>(total));
          fn.Call({ev});
        });
      },
      [p](size_t programs, const std::string& error) {
        if (!error.empty()) return p->Reject(error);
        p->Resolve([programs](Napi::Env env) -> Napi::Value {
          auto r = Napi::Object::New(env);
          r.Set("programs", static_cast<double>(programs));
          return r;
        });
      });
  return p->promise();
}

Napi::Value JsEngine::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto eng = Get(env);
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, "submit(prompt: Int32Array, options)");
  auto a = info[0].As<Napi::Int32Array>();
  std::vector<int32_t> prompt(a.Data(), a.Data() + a.ElementLength());
  return Guard(env, [&]() -> Napi::Value {
    const auto opts = SchemaChecked(env, [&] { return engine::ParseRequestOptions(OptionMap(env, info[1], "generate"), "generate"); });
    // grammar: {kind, text} (lib/grammar.ts made it from generate()'s `grammar` option).
    std::optional<grammar::Spec> spec;
    if (info.Length() > 2 && info[2].IsObject()) {
      auto g = info[2].As<Napi::Object>();
      if (!g.Get("kind").IsString() || !g.Get("text").IsString()) throw Napi::TypeError::New(env, "submit: grammar must be {kind: string, text: string}");
      spec = grammar::Spec{g.Get("kind").As<Napi::String>().Utf8Value(), g.Get("text").As<Napi::String>().Utf8Value()};
    }
    int64_t id;
    try {
      id = eng->Submit(std::move(prompt), opts, spec ? &*spec : nullptr);
    } catch (const grammar::GrammarError& e) {
      Napi::Error err = Napi::RangeError::New(env, e.what());
      err.Set("code", "INVALID_GRAMMAR");
      throw err;
    } catch (const grammar::Unsupported& e) {
      Napi::Error err = Napi::Error::New(env, e.what());
      err.Set("code", "GRAMMAR_UNSUPPORTED");
      throw err;
    } catch (const engine::QueueFull& e) {
      Napi::Error err = Napi::Error::New(env, e.what());
      err.Set("code", "QUEUE_FULL");
      throw err;
    } catch (const std::invalid_argument& e) {
      // The request does not fit this engine (vocabulary, blockSize, maxSeqLen, pool size).
      throw Napi::RangeError::New(env, e.what());
    }
    if (shared_->in_flight++ == 0) shared_->events.Ref(env);
    return Napi::Number::New(env, static_cast<double>(id));
  });
}

Napi::Value JsEngine::Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (engine_ && info.Length() > 0 && info[0].IsNumber()) engine_->Cancel(info[0].As<Napi::Number>().Int64Value());
  return env.Undefined();
}


Napi::Value JsEngine::Stats(const Napi::CallbackInfo& info) { return EngineStatsToJs(info.Env(), Get(info.Env())->Stats()); }

Napi::Value JsEngine::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  if (shared_->in_flight > 0) {
    shared_->in_flight = 0;
    shared_->events.Unref(env);
  }
  auto p = AsyncPromise::Create(env, Napi::Function(), "dflash-dispose");
  Teardown([p] { p->Resolve([](Napi::Env env) { return env.Undefined(); }); });
  return p->promise();
}

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& inst = Instance::Get(env);
  if (info.Length() < 3 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(inst.client_ctor.Value()) ||
      !info[1].IsObject() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "createEngine(client: Client, config: object, onEvents: function)");
  auto client = JsClient::Unwrap(info[0].As<Napi::Object>())->Get(env);
  auto cfg = info[1].As<Napi::Object>();
  if (!cfg.Get("target").IsObject()) throw Napi::TypeError::New(env, "createEngine: config.target is required");
  return Guard(env, [&]() -> Napi::Value {
    auto target = ParseTarget(cfg.Get("target").As<Napi::Object>());
    std::optional<models::DrafterConfig> drafter;
    if (cfg.Get("drafter").IsObject()) drafter = ParseDrafter(cfg.Get("drafter").As<Napi::Object>());
    const auto options =
        SchemaChecked(env, [&] { return engine::ParseEngineOptions(OptionMap(env, cfg.Get("options"), "Engine.load"), "Engine.load"); });
    std::vector<int64_t> devices;
    if (cfg.Get("devices").IsArray()) {
      auto a = cfg.Get("devices").As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) devices.push_back(a.Get(i).ToNumber().Int64Value());
    }
    std::set<int32_t> eos;
    if (cfg.Get("eosTokenIds").IsArray()) {
      auto a = cfg.Get("eosTokenIds").As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) eos.insert(a.Get(i).ToNumber().Int32Value());
    }
    const std::string tokenizer_json = cfg.Get("tokenizerJson").IsString() ? cfg.Get("tokenizerJson").As<Napi::String>().Utf8Value() : "";
    Napi::Object obj = inst.engine_ctor.New({});
    JsEngine* self = JsEngine::Unwrap(obj);
    auto shared = std::make_shared<JsEngine::Shared>();
    shared->events = Napi::ThreadSafeFunction::New(
        env, info[2].As<Napi::Function>(), "dflash-events", 0, 1, [](Napi::Env) {});
    shared->events.Unref(env);
    self->shared_ = shared;
    // The sink runs on the scheduler thread: it only queues the batch for the JS thread.
    auto sink = [shared](std::vector<engine::SequenceEvent>&& evs) { PostEvents(shared, new EventPayload{std::move(evs), std::nullopt}); };
    try {
      self->engine_ = std::make_shared<engine::Engine>(client, std::move(target), std::move(drafter), options, std::move(devices),
                                                       std::move(eos), sink, tokenizer_json);
    } catch (const std::invalid_argument& e) {
      // A mesh the devices or the models cannot make (named numbers): a value out of range.
      throw Napi::RangeError::New(env, e.what());
    }
    ++g_live_engines;
    return obj;
  });
}

void InitEngine(Napi::Env env, Napi::Object exports) {
  Instance::Get(env).engine_ctor = Napi::Persistent(JsEngine::Init(env));
  env.AddCleanupHook([] { Teardowns::Get().JoinAll(); });
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine));
  InitQueries(env, exports);
  auto internal = Napi::Object::New(env);
  InitProbes(env, internal);
  exports.Set("internal", internal);
}

}  // namespace dflash::addon
