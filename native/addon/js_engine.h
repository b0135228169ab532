// N-API wrapper of the engine (engine/engine.h). createEngine(client, config, onEvents) returns
// an Engine object whose methods never wait on device work: load() and dispose() return promises
// settled from other threads, submit() / cancel() are queue operations, stats() a snapshot copy.
// Tokens arrive through onEvents('tokens', batch) once per scheduler iteration; compile and
// disk-cache events through onEvents('program', event) (or load()'s onProgress while loading).
#pragma once
#include <napi.h>

#include <memory>

#include "engine/engine.h"

namespace dflash::addon {

class JsEngine : public Napi::ObjectWrap<JsEngine> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit JsEngine(const Napi::CallbackInfo& info);
  ~JsEngine() override;
  // The engine, or a JS Error "Engine is disposed".
  std::shared_ptr<engine::Engine> Get(Napi::Env env) const;

  struct Shared;  // state shared with the scheduler thread's callbacks

 private:
  friend Napi::Value CreateEngine(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Precompile(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // Stops the engine and destroys it on a thread of its own (the join waits for an iteration).
  void Teardown(std::function<void()> after);

  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<Shared> shared_;
};

Napi::Value CreateEngine(const Napi::CallbackInfo& info);
void InitEngine(Napi::Env env, Napi::Object exports);
void InitProbes(Napi::Env env, Napi::Object internal);  // js_probe.cc
void InitQueries(Napi::Env env, Napi::Object exports);  // js_queries.cc

}  // namespace dflash::addon
