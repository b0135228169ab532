// JS objects -> native configs: see js_config.h.
#include "addon/js_config.h"

#include <cmath>

namespace dflash::addon {
namespace {

double Num(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("model config: '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
int64_t Int(Napi::Object o, const char* key) {
  const double d = Num(o, key);
  if (d != std::floor(d) || d < 0 || d > 9007199254740991.0)
    throw Napi::TypeError::New(o.Env(), std::string("model config: '") + key + "' must be a non-negative integer");
  return static_cast<int64_t>(d);
}
double NumOr(Napi::Object o, const char* key, double dflt) { return o.Get(key).IsNumber() ? Num(o, key) : dflt; }
bool Bool(Napi::Object o, const char* key) { return o.Get(key).ToBoolean().Value(); }
std::string Str(Napi::Object o, const char* key, const std::string& dflt = "") {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : dflt;
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

// `ropeYarn: {factor, betaFast, betaSlow, originalMaxPositionEmbeddings, truncate, attentionFactor} | null`.
models::RopeYarn ParseRopeYarn(Napi::Object o) {
  models::RopeYarn r;
  Napi::Value v = o.Get("ropeYarn");
  if (!v.IsObject()) return r;
  auto ro = v.As<Napi::Object>();
  r.enabled = true;
  r.factor = Num(ro, "factor");
  r.beta_fast = Num(ro, "betaFast");
  r.beta_slow = Num(ro, "betaSlow");
  r.original_max_position_embeddings = Int(ro, "originalMaxPositionEmbeddings");
  r.truncate = Bool(ro, "truncate");
  r.attention_factor = Num(ro, "attentionFactor");
  return r;
}

// `quant: {payload: 'int8'|'int8-offset'|'int4'|'fp8'|'mxfp4', blockRows, blockCols, zeroPoint, ignore: string[]} | undefined`
// (lib/quantization.ts): the checkpoint's Linear weights stored narrow.
models::WeightQuant ParseQuant(Napi::Object o) {
  models::WeightQuant q;
  Napi::Value v = o.Get("quant");
  if (!v.IsObject()) return q;
  auto qo = v.As<Napi::Object>();
  const std::string payload = Str(qo, "payload");
  using P = models::QuantLayout::Payload;
  if (payload == "int8") q.layout.payload = P::kInt8;
  else if (payload == "int8-offset") q.layout.payload = P::kInt8Packed;
  else if (payload == "int4") q.layout.payload = P::kInt4;
  else if (payload == "fp8") q.layout.payload = P::kFp8;
  else if (payload == "mxfp4") q.layout.payload = P::kMxfp4;
  else throw Napi::TypeError::New(o.Env(), "model config: quant.payload must be 'int8', 'int8-offset', 'int4', 'fp8' or 'mxfp4', not '" + payload + "'");
  q.layout.block_rows = Int(qo, "blockRows");
  q.layout.block_cols = Int(qo, "blockCols");
  q.layout.zero_point = Bool(qo, "zeroPoint");
  if (q.layout.block_rows < 1) throw Napi::TypeError::New(o.Env(), "model config: quant.blockRows must be at least 1");
  Napi::Value ignore = qo.Get("ignore");
  if (ignore.IsArray()) {
    auto a = ignore.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) q.ignore.insert(a.Get(i).ToString().Utf8Value());
  }
  return q;
}

}  // namespace

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
  c.qkv_bias = o.Get("qkvBias").IsBoolean() && o.Get("qkvBias").As<Napi::Boolean>().Value();
  c.o_bias = o.Get("oBias").IsBoolean() && o.Get("oBias").As<Napi::Boolean>().Value();
  c.tie_word_embeddings = Bool(o, "tieWordEmbeddings");
  c.rope_llama3 = ParseRopeLlama3(o);
  c.rope_yarn = ParseRopeYarn(o);
  c.attention_sinks = Bool(o, "attentionSinks");
  c.swiglu_limit = static_cast<float>(NumOr(o, "swigluLimit", 7.0));
  c.swiglu_alpha = static_cast<float>(NumOr(o, "swigluAlpha", 1.702));
  Napi::Value windows = o.Get("layerWindows");
  if (windows.IsArray()) {  // per layer: a window, or null = full attention
    auto a = windows.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value x = a.Get(i);
      c.layer_windows.push_back(x.IsNumber() ? x.As<Napi::Number>().Int64Value() : 0);
    }
  }
  c.max_position_embeddings = static_cast<int64_t>(NumOr(o, "maxPositionEmbeddings", 4096));
  c.quant = ParseQuant(o);
  Napi::Value linear = o.Get("linearAttention");
  if (linear.IsObject()) {  // lib/config-qwen3-5.ts: Qwen3.5's Gated DeltaNet layers
    auto l = linear.As<Napi::Object>();
    c.linear.key_heads = Int(l, "numKeyHeads");
    c.linear.value_heads = Int(l, "numValueHeads");
    c.linear.key_dim = Int(l, "keyHeadDim");
    c.linear.value_dim = Int(l, "valueHeadDim");
    c.linear.conv_kernel = Int(l, "convKernel");
    Napi::Value layers = l.Get("layers");
    if (!layers.IsArray()) throw Napi::TypeError::New(o.Env(), "model config: linearAttention.layers must be an array");
    auto a = layers.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) c.linear_layers.push_back(a.Get(i).ToBoolean().Value());
  }
  c.rotary_dim = static_cast<int64_t>(NumOr(o, "rotaryDim", 0));
  Napi::Value moe = o.Get("moe");
  if (moe.IsObject()) {  // lib/config.ts MoeConfig
    auto m = moe.As<Napi::Object>();
    c.moe.num_experts = Int(m, "numExperts");
    c.moe.experts_per_token = Int(m, "numExpertsPerTok");
    c.moe.intermediate = Int(m, "moeIntermediateSize");
    c.moe.norm_topk_prob = Bool(m, "normTopkProb");
    c.moe.shared_intermediate = static_cast<int64_t>(NumOr(m, "sharedExpertIntermediateSize", 0));
    Napi::Value sparse = m.Get("sparseLayers");
    if (!sparse.IsArray()) throw Napi::TypeError::New(o.Env(), "model config: moe.sparseLayers must be an array");
    auto a = sparse.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) c.moe.sparse_layers.push_back(a.Get(i).ToBoolean().Value());
  }
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
  c.attention_bias = Bool(o, "attentionBias");
  c.rope_llama3 = ParseRopeLlama3(o);
  Napi::Value ids = o.Get("targetLayerIds");
  if (!ids.IsArray()) throw Napi::TypeError::New(o.Env(), "model config: drafter.targetLayerIds must be an array");
  auto a = ids.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) c.target_layer_ids.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  Napi::Value win = o.Get("slidingWindows");
  if (win.IsArray()) {
    auto w = win.As<Napi::Array>();
    for (uint32_t i = 0; i < w.Length(); ++i) {
      Napi::Value x = w.Get(i);
      c.sliding_windows.push_back(x.IsNumber() ? x.As<Napi::Number>().Int64Value() : 0);  // null = full attention
    }
  }
  Napi::Value d2 = o.Get("dflash2");
  if (d2.IsObject()) {  // lib/config.ts DFlash2Config
    auto m = d2.As<Napi::Object>();
    c.dflash2.conv_kernel_size = Int(m, "convKernelSize");
    c.dflash2.conv_group_size = Int(m, "convGroupSize");
    c.dflash2.selector_rank = Int(m, "selectorRank");
    c.dflash2.selector_top_k = Int(m, "selectorTopK");
    c.dflash2.vocab_size = Int(m, "vocabSize");
    c.dflash2.output_multiplier = static_cast<float>(NumOr(m, "outputMultiplier", 1.0));
    Napi::Value cap = m.Get("finalLogitSoftcapping");
    c.dflash2.final_logit_softcapping = cap.IsNumber() ? cap.As<Napi::Number>().FloatValue() : 0.0f;  // null = none
  }
  c.quant = ParseQuant(o);
  return c;
}

std::map<std::string, engine::OptionValue> OptionMap(Napi::Env env, Napi::Value v, const char* what) {
  std::map<std::string, engine::OptionValue> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsObject() || v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + ": options must be an object");
  auto o = v.As<Napi::Object>();
  auto names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = names.Get(i).ToString().Utf8Value();
    Napi::Value x = o.Get(name);
    if (x.IsUndefined()) continue;
    if (x.IsNumber()) out[name] = x.As<Napi::Number>().DoubleValue();
    else if (x.IsBoolean()) out[name] = x.As<Napi::Boolean>().Value();
    else if (x.IsString()) out[name] = x.As<Napi::String>().Utf8Value();
    else if (x.IsNull()) out[name] = engine::OtherValue{"null"};
    else if (x.IsBigInt()) out[name] = engine::OtherValue{"a bigint"};
    else out[name] = engine::OtherValue{x.IsArray() ? "an array" : x.IsFunction() ? "a function" : "an object"};
  }
  return out;
}

Napi::Value SchemaToJs(Napi::Env env, const std::vector<engine::OptionSpec>& specs) {
  auto arr = Napi::Array::New(env, specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& s = specs[i];
    auto o = Napi::Object::New(env);
    o.Set("name", s.name);
    static const char* kinds[] = {"integer", "number", "boolean", "string", "enum"};
    o.Set("kind", kinds[static_cast<int>(s.kind)]);
    if (std::holds_alternative<double>(s.def)) o.Set("default", std::get<double>(s.def));
    else if (std::holds_alternative<bool>(s.def)) o.Set("default", std::get<bool>(s.def));
    else o.Set("default", std::get<std::string>(s.def));
    if (s.kind == engine::OptionKind::kInteger || s.kind == engine::OptionKind::kNumber) {
      o.Set("min", s.min);
      o.Set("max", s.max);
    }
    if (s.power_of_two) o.Set("powerOfTwo", true);
    if (!s.choices.empty()) {
      auto c = Napi::Array::New(env, s.choices.size());
      for (size_t k = 0; k < s.choices.size(); ++k) c.Set(k, s.choices[k]);
      o.Set("choices", c);
    }
    o.Set("doc", s.doc);
    arr.Set(i, o);
  }
  return arr;
}

}  // namespace dflash::addon
