#!/usr/bin/env bash
# LoRA training throughput and peak memory of `openweights tune` on synthetic models of real shapes.
# usage: bench/tune_bench.sh [PRESETS] [TYPES] [SEQ_LEN] [STEPS] [THREADS]
#   defaults: "smollm2-135m llama-3.2-1b" "f16 q4_k_m" 512 3 2
# Prints one markdown row per model: tokens/s over the steps after the first (warm-up), peak RSS of the process.
set -euo pipefail
cd "$(dirname "$0")/.."
presets=${1:-"smollm2-135m llama-3.2-1b"}; types=${2:-"f16 q4_k_m"}; seq=${3:-512}; steps=${4:-3}; threads=${5:-2}
dotnet build src/OpenWeights.Cli -c Release -v q -nologo >/dev/null
ow="dotnet src/OpenWeights.Cli/bin/Release/net10.0/OpenWeights.Cli.dll"
mkdir -p bench/.models bench/.tune
# Training text: War and Peace from ../shared when present, else generated sentences (tokens/s does not depend on content).
data=bench/.tune/text.txt
if [ -f ../shared/testdata/corpus/war-and-peace.txt ]; then head -c 2000000 ../shared/testdata/corpus/war-and-peace.txt > $data
else python3 -c "import random; r=random.Random(1); w='the a king queen river stone light dark went saw said old new'.split(); print('\n'.join(' '.join(r.choice(w) for _ in range(200)) for _ in range(2000)))" > $data; fi
echo "| model | base | seq | steps | tokens/s (steps 2..N) | peak RSS |"
echo "|---|---|---:|---:|---:|---:|"
for p in $presets; do for t in $types; do
  m=bench/.models/$p-$t.gguf
  [ -f $m ] || $ow synth --preset $p --type $t -o $m >/dev/null
  out=bench/.tune/$p-$t; rm -rf $out
  /usr/bin/time -f "%M" -o bench/.tune/rss $ow tune $m --data $data -o $out -c $seq --max-steps $steps --threads $threads \
      --val-split 0 --checkpoint-every 0 --eval-every 0 >/dev/null 2>bench/.tune/log || { cat bench/.tune/log; exit 1; }
  python3 - "$out/metrics.jsonl" "$(tail -1 bench/.tune/rss)" "$p" "$t" "$seq" "$steps" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# tokens_per_s is cumulative since the start of the run: recover per-step time and drop step 1 (JIT, page faults).
times = [r["tokens"] / r["tokens_per_s"] for r in rows]
tok = rows[-1]["tokens"] - rows[0]["tokens"]; sec = times[-1] - times[0]
rate = tok / sec if len(rows) > 1 else rows[0]["tokens_per_s"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {sys.argv[6]} | {rate:.1f} | {int(sys.argv[2]) / 1024:.0f} MiB |")
PY
done; done
