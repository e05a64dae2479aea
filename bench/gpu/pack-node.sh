#!/usr/bin/env bash
# bench/gpu/pack-node.sh: prepares, on a machine without a GPU, what bench/gpu/run-node.sh
# needs on a GPU machine whose image has no Node and no npm registry:
#   .device/node.xz       this machine's Node binary (../shared/tools/pack-node-for-device.sh)
#   .device/pkg.tar.xz    pkg/: dist/, package.json, the runtime node_modules (tokenizers,
#                         sharp + libvips, cli-progress) and build/Release/llm2clip.node
#                         compiled with CUDA for LLM2CLIP_CUDA_ARCHS (default 90a)
# Run from the repository root after `npm install`; carry .device/node.xz and
# .device/pkg.tar.xz to the GPU machine (about 35 MB together).
set -euo pipefail
cd "$(dirname "$0")/../.."
archs=${LLM2CLIP_CUDA_ARCHS:-90a}
mkdir -p .device
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
[ -f ../shared/tools/pack-node-for-device.sh ] && bash ../shared/tools/pack-node-for-device.sh >/dev/null
[ -f .device/node.xz ] || xz -T0 -6 -c "$(command -v node)" >.device/node.xz
npx tsc -p tsconfig.json
LLM2CLIP_CUDA=on LLM2CLIP_CUDA_ARCHS="$archs" node node_modules/cmake-js/bin/cmake-js compile --directory . --out .device/build >.device/build.log 2>&1 ||
  { tail -n 30 .device/build.log; exit 1; }
rm -rf .device/pkg && mkdir -p .device/pkg/node_modules .device/pkg/build/Release
cp -r dist package.json .device/pkg/
rm -rf .device/pkg/dist/test
deps=$(node -e '
const fs = require("fs"), path = require("path"), seen = new Set();
const walk = (n) => { if (seen.has(n) || !fs.existsSync(path.join("node_modules", n))) return; seen.add(n);
  const pj = JSON.parse(fs.readFileSync(path.join("node_modules", n, "package.json")));
  for (const k of Object.keys({ ...pj.dependencies, ...(pj.optionalDependencies || {}) })) walk(k); };
for (const n of ["@huggingface/tokenizers", "cli-progress", "sharp"]) walk(n);
console.log([...seen].join(" "));')
for d in $deps; do mkdir -p ".device/pkg/node_modules/$(dirname "$d")"; cp -r "node_modules/$d" ".device/pkg/node_modules/$d"; done
cp .device/build/Release/llm2clip.node .device/pkg/build/Release/
strip --strip-unneeded .device/pkg/build/Release/llm2clip.node
tar -C .device -cJf .device/pkg.tar.xz pkg
ls -la .device/node.xz .device/pkg.tar.xz
