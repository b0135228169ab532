// The addon's entry point: registers the runtime (Client / Buffer / Executable, plugin probing,
// live-object counters) and the engine.
#include <napi.h>

#include "addon/js_engine.h"
#include "addon/js_runtime.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  dflash::addon::InitRuntime(env, exports);
  dflash::addon::InitEngine(env, exports);
  return exports;
}

NODE_API_MODULE(dflash, Init)
