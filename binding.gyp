{
  "targets": [
    {
      "target_name": "dflash",
      "sources": ["<!@(node scripts/gyp-sources.js all)"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++20", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
