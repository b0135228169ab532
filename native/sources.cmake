# The one list of native sources. CMakeLists.txt includes this file and binding.gyp reads it
# through scripts/gyp-sources.js, so the two builds can never compile different files.
set(DFLASH_CORE_SOURCES
  native/pjrt/plugin.cc
  native/pjrt/errors.cc
  native/pjrt/client.cc
  native/pjrt/signature.cc
  native/hlo/builder.cc
  native/hlo/builder_shape.cc
  native/hlo/builder_index.cc
  native/models/rope.cc
  native/models/layers.cc
  native/models/moe.cc
  native/models/target.cc
  native/models/drafter.cc
  native/models/sampling.cc
  native/engine/page_allocator.cc
  native/engine/program_cache.cc
  native/engine/weights.cc
  native/engine/engine.cc
  native/engine/speculative.cc
  native/engine/bench.cc
)
set(DFLASH_ADDON_SOURCES
  native/addon/addon.cc
  native/addon/js_runtime.cc
  native/addon/js_engine.cc
)
