// JS views of the engine's state (js_engine.cc keeps the lifecycle): sequence and program events
// as the onEvents callback receives them, and engine.stats().
#pragma once
#include <napi.h>

#include <vector>

#include "engine/engine.h"

namespace dflash::addon {

Napi::Object ProgramEventToJs(Napi::Env env, const engine::ProgramEvent& e);
// { logprobs: Float32Array, top, topIds: Int32Array, topLogprobs: Float32Array } (top per token).
Napi::Object LogprobsToJs(Napi::Env env, const engine::TokenLogprobs& lp);
Napi::Array SequenceEventsToJs(Napi::Env env, const std::vector<engine::SequenceEvent>& evs);
// engine.stats(): the scheduler's counters summed over replicas, memory, dtypes, the mesh.
Napi::Object EngineStatsToJs(Napi::Env env, const engine::EngineStats& s);

}  // namespace dflash::addon
