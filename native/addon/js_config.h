// JS objects -> native configs. Model configs arrive as the normalised objects lib/config.ts
// makes from config.json (camelCase); option objects are converted to name -> value maps and
// validated against the one schema in engine/options.h.
#pragma once
#include <napi.h>

#include <map>
#include <string>

#include "engine/options.h"
#include "models/config.h"

namespace dflash::addon {

models::TargetConfig ParseTarget(Napi::Object o);
models::DrafterConfig ParseDrafter(Napi::Object o);

// Every own property whose value is not undefined; numbers, booleans and strings as such, any
// other type kept as a description so the schema reports it ("got an object").
std::map<std::string, engine::OptionValue> OptionMap(Napi::Env env, Napi::Value v, const char* what);

// The schemas as plain objects: [{name, kind, default, min, max, powerOfTwo, choices, doc}].
Napi::Value SchemaToJs(Napi::Env env, const std::vector<engine::OptionSpec>& specs);

// An option the schema refuses is a RangeError (the value is outside what the option accepts; the
// message names option, value and range); Parse* throws std::invalid_argument for nothing else.
template <class Parse>
auto SchemaChecked(Napi::Env env, Parse&& parse) {
  try {
    return parse();
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, e.what());
  }
}

}  // namespace dflash::addon
