// JS views of the engine's state: see js_engine_views.h.
#include "addon/js_engine_views.h"

#include "addon/typed_arrays.h"

namespace dflash::addon {

Napi::Object ProgramEventToJs(Napi::Env env, const engine::ProgramEvent& e) {
  static const char* kinds[] = {"compile-start", "compile-done", "cache-load", "cache-reject", "unload"};
  auto o = Napi::Object::New(env);
  o.Set("phase", "program");
  o.Set("kind", kinds[static_cast<int>(e.kind)]);
  o.Set("program", e.key);
  o.Set("seconds", e.seconds);
  if (!e.detail.empty()) o.Set("detail", e.detail);
  return o;
}

Napi::Object LogprobsToJs(Napi::Env env, const engine::TokenLogprobs& lp) {
  auto o = Napi::Object::New(env);
  o.Set("logprobs", TypedArrayCopy(env, lp.logprob));
  o.Set("top", lp.top);
  o.Set("topIds", TypedArrayCopy(env, lp.top_ids));
  o.Set("topLogprobs", TypedArrayCopy(env, lp.top_logprobs));
  return o;
}

Napi::Array SequenceEventsToJs(Napi::Env env, const std::vector<engine::SequenceEvent>& evs) {
  auto arr = Napi::Array::New(env, evs.size());
  for (size_t i = 0; i < evs.size(); ++i) {
    const auto& e = evs[i];
    auto o = Napi::Object::New(env);
    o.Set("id", static_cast<double>(e.id));
    o.Set("tokens", TypedArrayCopy(env, e.tokens));
    o.Set("drafted", e.drafted);
    o.Set("proposed", e.proposed);
    o.Set("block", e.block);
    o.Set("seconds", e.iteration_seconds);
    if (!e.finish.empty()) o.Set("finish", e.finish);
    if (!e.error.empty()) o.Set("error", e.error);
    if (e.cached_tokens >= 0) o.Set("cachedTokens", static_cast<double>(e.cached_tokens));
    if (e.logprobs.size() > 0) o.Set("logprobs", LogprobsToJs(env, e.logprobs));
    if (e.prompt_logprobs.size() > 0) {
      auto p = LogprobsToJs(env, e.prompt_logprobs);
      p.Set("from", static_cast<double>(e.prompt_logprobs_from));
      o.Set("promptLogprobs", p);
    }
    arr.Set(i, o);
  }
  return arr;
}

Napi::Object EngineStatsToJs(Napi::Env env, const engine::EngineStats& s) {
  const auto& sc = s.scheduler;
  auto o = Napi::Object::New(env);
  auto num = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  num("iterations", sc.iterations);
  num("decodeIterations", sc.decode_iterations);
  num("prefillCalls", sc.prefill_calls);
  num("preemptions", sc.preemptions);
  num("contextCatchUps", sc.catch_ups);
  num("tokens", sc.tokens);
  num("runningSequences", sc.running);
  num("queuedSequences", sc.queued);
  num("freePages", sc.free_pages);
  num("totalPages", sc.total_pages);
  num("lastBlock", sc.last_block);
  num("hostTransfers", sc.device.host_transfers);
  num("executions", sc.device.executions);
  num("cacheCopies", sc.device.cache_copies);
  num("deviceSeconds", sc.device.device_seconds);
  num("compiles", sc.compiles);
  num("diskCacheHits", sc.disk_hits);
  num("diskCacheRejects", sc.disk_rejects);
  num("cachedPages", sc.cached_pages);
  num("prefixCacheQueries", sc.prefix_queries);
  num("prefixCacheHits", sc.prefix_hits);
  num("grammarRows", sc.grammar_rows);
  num("grammarSeconds", sc.grammar_seconds);
  auto offered = Napi::Array::New(env), accepted = Napi::Array::New(env);
  for (size_t i = 1; i < sc.offered.size(); ++i) {
    offered.Set(i - 1, static_cast<double>(sc.offered[i]));
    accepted.Set(i - 1, static_cast<double>(sc.accepted[i]));
  }
  o.Set("positionOffered", offered);
  o.Set("positionAccepted", accepted);
  o.Set("platform", s.platform);
  o.Set("dtype", s.dtype);
  o.Set("kvDtype", s.kv_dtype);
  o.Set("dtypeReason", s.dtype_reason);
  num("weightBytes", s.weight_bytes);
  num("kvCacheBytes", s.kv_bytes);
  num("pageBytes", s.page_bytes);
  num("maxSeqLen", s.max_seq_len);
  num("maxBlock", s.max_block);
  num("pageSize", s.page_size);
  num("maxSequences", s.max_sequences);
  o.Set("prefixCaching", s.prefix_caching);
  o.Set("adaptive", s.adaptive);
  if (s.recurrent_layers > 0) {
    auto rs = Napi::Object::New(env);
    rs.Set("layers", static_cast<double>(s.recurrent_layers));
    rs.Set("bytesPerSequence", static_cast<double>(s.recurrent_bytes_per_sequence));
    rs.Set("slots", static_cast<double>(s.recurrent_slots));
    o.Set("recurrentState", rs);
  } else {
    o.Set("recurrentState", env.Null());
  }
  if (s.ring_layers > 0) {
    auto ring = Napi::Object::New(env);
    ring.Set("layers", static_cast<double>(s.ring_layers));
    ring.Set("window", static_cast<double>(s.ring_window));
    ring.Set("ringPages", static_cast<double>(s.ring_pages));
    ring.Set("bytesPerSequence", static_cast<double>(s.ring_bytes_per_sequence));
    o.Set("slidingWindow", ring);
  } else {
    o.Set("slidingWindow", env.Null());
  }
  auto programs = Napi::Object::New(env);
  programs.Set("loaded", static_cast<double>(s.programs_loaded));
  programs.Set("servingSet", static_cast<double>(s.serving_programs));
  programs.Set("processMaps", static_cast<double>(s.process_maps));
  programs.Set("mapLimit", static_cast<double>(s.map_limit));
  programs.Set("maskBuffers", static_cast<double>(s.mask_buffers));
  programs.Set("programMaps", static_cast<double>(s.program_maps));
  programs.Set("unloaded", static_cast<double>(s.programs_unloaded));
  o.Set("programs", programs);
  // The mesh: replicas of tensorParallel devices each, and what every device holds.
  auto mesh = Napi::Object::New(env);
  mesh.Set("tensorParallel", s.tensor_parallel);
  mesh.Set("dataParallel", s.data_parallel);
  auto replicas = Napi::Array::New(env, s.replicas.size());
  for (size_t r = 0; r < s.replicas.size(); ++r) {
    const auto& rs = s.replicas[r];
    auto ro = Napi::Object::New(env);
    auto devices = Napi::Array::New(env, rs.device_ids.size());
    for (size_t d = 0; d < rs.device_ids.size(); ++d) {
      auto dev = Napi::Object::New(env);
      dev.Set("id", static_cast<double>(rs.device_ids[d]));
      dev.Set("weightBytes", static_cast<double>(d < rs.device_weight_bytes.size() ? rs.device_weight_bytes[d] : 0));
      dev.Set("kvCacheBytes", static_cast<double>(rs.device_kv_bytes));
      devices.Set(d, dev);
    }
    ro.Set("devices", devices);
    ro.Set("runningSequences", rs.running);
    ro.Set("queuedSequences", rs.queued);
    ro.Set("freePages", rs.free_pages);
    ro.Set("totalPages", rs.total_pages);
    ro.Set("submitted", static_cast<double>(rs.submitted));
    replicas.Set(r, ro);
  }
  mesh.Set("replicas", replicas);
  o.Set("mesh", mesh);
  return o;
}

}  // namespace dflash::addon
