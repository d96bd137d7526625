#!/usr/bin/env bash
# Several models in one server: resident memory (VmRSS) before any model loads, with one loaded, and after
# --idle-unload gave it back. Usage: bench/serve_models_rss.sh MODEL.gguf [IDLE_SECONDS]
# (not a timed test: figures go to BENCHMARKS.md)
set -euo pipefail
model=${1:?a GGUF model}; idle=${2:-5}
dir=$(mktemp -d); ln -s "$(readlink -f "$model")" "$dir/$(basename "$model")"
name=$(basename "$model" .gguf)
cli=$(dirname "$0")/../src/OpenWeights.Cli/bin/Release/net10.0/OpenWeights.Cli
port=$((20000 + RANDOM % 20000))
"$cli" serve --models-dir "$dir" --idle-unload "$idle" --port "$port" --parallel 4 --ctx 2048 --threads 2 >/dev/null 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$pid/status; }
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.5; done
echo "idle server, nothing loaded: $(rss)"
curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d "{\"model\":\"$name\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":4}" >/dev/null
echo "$name loaded, one request served: $(rss)  loaded: $(curl -s http://127.0.0.1:$port/api/ps)"
sleep $((idle + 3))
echo "after --idle-unload $idle s: $(rss)  loaded: $(curl -s http://127.0.0.1:$port/api/ps)"
grep -c "$(readlink -f "$model")" /proc/$pid/maps | sed 's/^/file mappings left: /' || true
