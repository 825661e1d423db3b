{
  "targets": [
    {
      "target_name": "postfix_native",
      "sources": ["native/postfix_native.cc", "native/patterns.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions"],
      "libraries": ["-ldb-5.3", "-llmdb", "-lpcre2-8", "-licuuc"]
    }
  ]
}
