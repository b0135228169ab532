// Per-environment addon state (class constructors), kept with napi_set_instance_data so the
// addon works in worker threads and after module reloads.
#pragma once
#include <napi.h>

namespace dflash::addon {

struct Instance {
  Napi::FunctionReference client_ctor, buffer_ctor, executable_ctor, engine_ctor;

  static Instance& Get(Napi::Env env) {
    auto* inst = env.GetInstanceData<Instance>();
    if (!inst) {
      inst = new Instance();
      env.SetInstanceData(inst);  // deleted by node-addon-api when the environment goes away
    }
    return *inst;
  }
};

}  // namespace dflash::addon
