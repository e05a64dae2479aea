#!/usr/bin/env bash
# bench/gpu/run-node.sh: the TypeScript stack on a GPU machine, from what
# bench/gpu/pack-node.sh packed (.device/node.xz, .device/pkg.tar.xz):
#   1. node-smoke.js: ccFinetune / trainClip on CUDA against the CPU, bfloat16 training,
#      out of memory as a typed error;
#   2. the demo (--quick, then the full one) with --device cuda;
#   3. the bench suites with --device cuda.
# Output under $OUT (or ./gpu-node-out): node-smoke.log, demo-*.log, metrics.json,
# bench-*.log and the suites' JSON / SVG.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-node-out}
mkdir -p "$out"
command -v node >/dev/null || { xz -dc .device/node.xz >/usr/local/bin/node && chmod +x /usr/local/bin/node; }
rm -rf /tmp/pkg && tar -xJf .device/pkg.tar.xz -C /tmp
export LLM2CLIP_ADDON=/tmp/pkg/build/Release/llm2clip.node
node --version
node -e "const l = require('/tmp/pkg/dist/src'); console.log('cuda', l.cuda.isAvailable(), l.cuda.isAvailable() ? l.cuda.deviceName(0) : '')"
timeout 240 node bench/gpu/node-smoke.js --pkg /tmp/pkg 2>&1 | tee "$out/node-smoke.log" | cut -c1-300
(cd /tmp/pkg && timeout 120 node dist/src/cli.js demo --device cuda --quick --out /tmp/demo-quick --quiet) >"$out/demo-quick.log" 2>&1
echo "demo --quick: exit $? ($(tail -n 1 "$out/demo-quick.log" | cut -c1-200))"
(cd /tmp/pkg && /usr/bin/time -f "%e s" timeout "${L2C_DEMO_TIMEOUT:-300}" node dist/src/cli.js demo --device cuda --out /tmp/demo-full --quiet) >"$out/demo-full.log" 2>&1
echo "demo (full): exit $? ($(tail -n 2 "$out/demo-full.log" | tr '\n' ' ' | cut -c1-300))"
cp /tmp/demo-full/metrics.json "$out/demo-metrics.json" 2>/dev/null
for s in ${L2C_BENCH_SUITES:-infonce train-step}; do
  extra=""; [ "$s" = infonce ] && extra="--max-n ${L2C_INFONCE_MAX_N:-262144}"
  (cd /tmp/pkg && timeout 150 node dist/bench/index.js "$s" --device cuda --out "/tmp/bench-$s" $extra) >"$out/bench-$s.log" 2>&1
  cp /tmp/bench-$s/*.json "$out/" 2>/dev/null
  echo "bench $s: exit $?"; tail -n 25 "$out/bench-$s.log"
done
