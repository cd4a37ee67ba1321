#!/usr/bin/env bash
# Installs the real llama.cpp OpenAI-compatible server (PyPI `llama-cpp-python[server]`, whose sdist bundles
# llama.cpp and builds it with cmake) and the `gguf` package into target/llm-venv, for tests/llm_real.rs.
# A no-op when the venv is already complete. Builds with 2 jobs under `nice` (the machine has 2 cores), without
# the multimodal library (LLAVA_BUILD=OFF: llama_cpp imports it only for image chat handlers).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${RALF_LLM_VENV:-$root/target/llm-venv}"
version=0.3.36
# The vocabulary of the test model: a vocab-only GGUF that llama.cpp ships in models/ (inside the sdist).
vocab="$venv/share/ggml-vocab-llama-spm.gguf"
extract_vocab() {
  mkdir -p "$venv/share" "$venv/sdist"
  local sdist
  sdist=$(ls "$venv"/sdist/llama_cpp_python-"$version".tar.gz 2>/dev/null || true)
  if [ -z "$sdist" ]; then
    "$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$venv/sdist"
    sdist="$venv/sdist/llama_cpp_python-$version.tar.gz"
  fi
  tar -xzf "$sdist" -O "llama_cpp_python-$version/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf" >"$vocab.tmp"
  mv "$vocab.tmp" "$vocab"
}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import llama_cpp.server, gguf' 2>/dev/null; then
  [ -s "$vocab" ] || extract_vocab
  echo "llm setup: $venv already present"
  exit 0
fi
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "llm setup: $python not found" >&2
  exit 1
fi
start=$(date +%s)
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip wheel
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF}"
extract_vocab
nice -n 10 "$venv/bin/pip" install "llama-cpp-python[server] @ file://$venv/sdist/llama_cpp_python-$version.tar.gz" 'gguf==0.19.0' numpy
"$venv/bin/python" -c 'import llama_cpp.server, gguf'
echo "llm setup: installed into $venv in $(( $(date +%s) - start ))s"
