// Module-level queries that need no engine: the option schemas, a request options check, the
// dtype an engine would choose, and what each device of a tensor-parallel group would hold.
#include <optional>

#include "addon/async.h"
#include "addon/js_config.h"
#include "addon/js_engine.h"
#include "engine/dtype_policy.h"
#include "engine/kv_pool.h"
#include "engine/options.h"
#include "engine/serving_plan.h"
#include "models/drafter.h"
#include "models/parallel.h"
#include "models/target.h"

namespace dflash::addon {

void InitQueries(Napi::Env env, Napi::Object exports) {
  exports.Set("optionSchemas", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                auto o = Napi::Object::New(info.Env());
                o.Set("engine", SchemaToJs(info.Env(), engine::EngineOptionSpecs()));
                o.Set("request", SchemaToJs(info.Env(), engine::RequestOptionSpecs()));
                return o;
              }));
  exports.Set("validateRequestOptions", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Env env = info.Env();
                return Guard(env, [&]() -> Napi::Value {
                  SchemaChecked(env, [&] { return engine::ParseRequestOptions(OptionMap(env, info[0], "generate"), "generate"); });
                  return env.Undefined();
                });
              }));
  // dtypePolicy(platform, checkpointDtype) -> the reason string an engine would report with
  // dtype 'auto' (doctor shows it per checkpoint dtype for the selected plugin's platform).
  exports.Set("dtypePolicy", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Env env = info.Env();
                return Guard(env, [&]() -> Napi::Value {
                  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
                    throw Napi::TypeError::New(env, "dtypePolicy(platform: string, checkpointDtype: 'f32' | 'bf16' | 'f16')");
                  const auto dt = engine::ParseDtypeName(info[1].As<Napi::String>().Utf8Value());
                  return Napi::String::New(env, engine::ChooseDtypes(info[0].As<Napi::String>().Utf8Value(), dt, "auto", "auto").reason);
                });
              }));
  // meshLayout(target, drafter | undefined, tensorParallel, platform, checkpointDtype[, quantizedWeights]) -> what each
  // device of a tensor-parallel group holds with the dtypes an engine would choose there
  // ({ dtype, weightBytes, kvHeads, splitVocab, kvBytesPerToken }); throws a RangeError naming the
  // config field when the models do not split over that many devices.
  exports.Set("meshLayout", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Env env = info.Env();
                if (info.Length() < 5 || !info[0].IsObject() || !info[2].IsNumber() || !info[3].IsString() || !info[4].IsString())
                  throw Napi::TypeError::New(env, "meshLayout(target: object, drafter: object | undefined, tensorParallel: number, "
                                                  "platform: string, checkpointDtype: 'f32' | 'bf16' | 'f16')");
                return Guard(env, [&]() -> Napi::Value {
                  auto target = ParseTarget(info[0].As<Napi::Object>());
                  std::optional<models::DrafterConfig> drafter;
                  if (info[1].IsObject()) drafter = ParseDrafter(info[1].As<Napi::Object>());
                  const int64_t tp = info[2].As<Napi::Number>().Int64Value();
                  // A quantized checkpoint counts as the engine would hold it there (quantizedWeights auto).
                  const std::string quantized = info.Length() > 5 && info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "auto";
                  target.quant.expand_at_load = engine::QuantizedExpandAtLoad(quantized, info[3].As<Napi::String>().Utf8Value());
                  if (drafter) drafter->quant.expand_at_load = target.quant.expand_at_load;
                const auto choice = engine::ChooseDtypes(info[3].As<Napi::String>().Utf8Value(),
                                                           engine::ParseDtypeName(info[4].As<Napi::String>().Utf8Value()), "auto", "auto");
                  const pjrt::DType dt = choice.numerics.dtype;
                  models::TensorParallel layout;
                  int64_t bytes = 0;
                  try {
                    layout = models::TargetParallel(target, tp);
                    bytes = models::BytesPerDevice(models::TargetWeightSpecs(target, dt, tp), tp);
                    if (drafter) bytes += models::BytesPerDevice(models::DrafterWeightSpecs(*drafter, dt, target, tp), tp);
                  } catch (const std::invalid_argument& e) {
                    throw Napi::RangeError::New(env, e.what());
                  }
                  const models::Numerics& n = choice.numerics;
                  auto o = Napi::Object::New(env);
                  o.Set("dtype", pjrt::DTypeName(dt));
                  o.Set("weightBytes", static_cast<double>(bytes));
                  o.Set("kvHeads", static_cast<double>(layout.kv_heads / tp));
                  o.Set("splitVocab", layout.split_vocab);
                  o.Set("kvBytesPerToken", static_cast<double>(engine::KvPool::PageBytes(target, drafter ? &*drafter : nullptr, n, 1, tp)));
                  return o;
                });
              }));
  // servingPlan(options, maxSeqLen, block, context) -> the programs precompile() makes for these
  // engine options (defaults filled as Engine.load fills them), a resolved maxSeqLen, the
  // drafter's block (0: none) and a context <= maxSeqLen: [{ kind, rows, tokens, block, text }].
  exports.Set("servingPlan", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Env env = info.Env();
                if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber())
                  throw Napi::TypeError::New(env, "servingPlan(options: object, maxSeqLen: number, block: number, context: number)");
                return Guard(env, [&]() -> Napi::Value {
                  const auto opt = SchemaChecked(env, [&] { return engine::ParseEngineOptions(OptionMap(env, info[0], "servingPlan"), "servingPlan"); });
                  engine::ServingPlanOptions p;
                  p.max_seq_len = info[1].As<Napi::Number>().Int64Value();
                  p.block = info[2].As<Napi::Number>().Int64Value();
                  p.context = info[3].As<Napi::Number>().Int64Value();
                  p.max_sequences = opt.max_sequences;
                  p.prefill_chunk = opt.prefill_chunk;
                  if (p.max_seq_len < 2 || p.block < 0 || p.context < 1)
                    throw Napi::RangeError::New(env, "servingPlan: maxSeqLen >= 2, block >= 0, context >= 1");
                  static const char* kKinds[] = {"prefill", "prefill-context", "decode", "verify", "draft"};
                  const auto plan = engine::ServingPlan(p);
                  auto arr = Napi::Array::New(env, plan.size());
                  for (size_t i = 0; i < plan.size(); ++i) {
                    auto o = Napi::Object::New(env);
                    o.Set("kind", kKinds[static_cast<int>(plan[i].kind)]);
                    o.Set("rows", static_cast<double>(plan[i].rows));
                    o.Set("tokens", static_cast<double>(plan[i].tokens));
                    o.Set("block", static_cast<double>(plan[i].block));
                    o.Set("text", plan[i].Describe());
                    arr.Set(static_cast<uint32_t>(i), o);
                  }
                  return arr;
                });
              }));
}

}  // namespace dflash::addon
