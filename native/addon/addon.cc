// The addon's entry point: registers the runtime (Client / Buffer / Executable, plugin probing,
// live-object counters) and the engine, and exitNow (see lib/exit-guard.ts).
#include <napi.h>

#include <cstdio>
#include <cstdlib>

#include "addon/js_engine.h"
#include "addon/js_runtime.h"

// Ends the process with `code` without running exit handlers or static destructors: a PJRT
// plugin's destructors would free state its own threads (a compile in flight) still use.
static Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  std::fflush(nullptr);
  std::_Exit(code);
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  dflash::addon::InitRuntime(env, exports);
  dflash::addon::InitEngine(env, exports);
  exports.Set("exitNow", Napi::Function::New(env, ExitNow));
  return exports;
}

NODE_API_MODULE(dflash, Init)
