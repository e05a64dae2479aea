#!/usr/bin/env node
// node-smoke.js: the TypeScript stack on a GPU, through the compiled package (dist/),
// for machines with Node and a CUDA build of the addon (bench/gpu/run-node.sh packs both).
//   1. ccFinetune (MNTP + SimCSE with LoRA, tiny model) on generated captions, float32 on
//      the CPU and on CUDA with the same seed: the losses must agree step for step;
//   2. trainClip (tiny ViT + adapter, cached features) on generated images, likewise;
//   3. both stages in bfloat16 on CUDA (the GPU default): finite losses that fall;
//   4. step times on CUDA beside the CPU's.
// Prints one JSON line per check and a summary; exits 1 when a check fails.
// Usage: node bench/gpu/node-smoke.js [--pkg DIR] (DIR holds dist/; default the repo root)
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const pkgArg = process.argv.indexOf('--pkg');
const root = pkgArg > 0 ? path.resolve(process.argv[pkgArg + 1]) : path.join(__dirname, '..', '..');
const l2c = require(path.join(root, 'dist', 'src'));
const sharp = require(require.resolve('sharp', { paths: [root] }));

// L2C_SMOKE_DEVICE=cpu runs every check on the CPU twice (a dry run of this script).
const GPU = process.env.L2C_SMOKE_DEVICE || 'cuda';
let failures = 0;
function report(obj) {
  obj.collectedUndisposed = l2c.memoryStats().collectedUndisposed;
  console.log(JSON.stringify(obj));
  if (obj.ok === false) failures++;
}
const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
/** Largest relative difference of two loss sequences (over max(1, |a|)). */
function maxRel(a, b) {
  let m = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(a[i]));
    m = Math.max(m, Number.isFinite(d) ? d : Infinity);
  }
  return m;
}

function captions() {
  const animals = ['dog', 'cat', 'horse', 'bird', 'child', 'man', 'woman', 'boy', 'girl', 'cow'];
  const acts = ['runs', 'sleeps', 'jumps', 'sits', 'plays', 'swims', 'climbs', 'eats', 'walks', 'rests'];
  const places = ['on the grass', 'in the water', 'on a bench', 'near a tree', 'in the snow'];
  const images = [];
  for (let i = 0; i < 200; i++) {
    const a = animals[i % 10], v = acts[Math.floor(i / 10) % 10], p = places[i % 5];
    images.push({ id: `img${i}`, captions: [`a ${a} ${v} ${p}`, `the ${a} ${v} ${p} today`, `one ${a} that ${v} ${p}`] });
  }
  return { format: 'captions', source: 'generated', images };
}

async function images(dir) {
  const cols = [[220, 30, 30], [30, 200, 40], [30, 40, 220], [230, 220, 30], [140, 40, 170], [250, 140, 20], [245, 245, 245], [10, 10, 10]];
  const names = ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white', 'black'];
  const items = [];
  for (let i = 0; i < cols.length; i++)
    for (let v = 0; v < 8; v++) {
      const [r, g, b] = cols[i];
      const file = path.join(dir, `${names[i]}-${v}.png`);
      await sharp({ create: { width: 40 + v * 3, height: 36, channels: 3, background: { r, g: Math.min(255, g + v * 4), b } } }).png().toFile(file);
      items.push({ image: file, file: path.basename(file), captions: [`a ${names[i]} picture`, `the colour ${names[i]}`] });
    }
  return items;
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-node-smoke-'));
  report({ check: 'runtime', cuda: l2c.cuda.isAvailable(), devices: l2c.cuda.isAvailable() ? l2c.cuda.deviceCount() : 0, ok: GPU === 'cpu' || l2c.cuda.isAvailable() });
  if (failures) process.exit(1);
  const ds = captions();
  const sizes = { hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 500 };
  const cc = (device, dtype, out, extra = {}) => l2c.ccFinetune({
    data: ds, model: 'tiny', presetSizes: sizes, mntpSteps: 8, mntpBatchSize: 32, steps: 8, batchSize: 32, chunkSize: 16,
    outputDir: path.join(tmp, out), progress: false, checkpointEvery: 1000, seed: 7, maxLength: 32, device, dtype, ...extra,
  });
  // 1. ccFinetune parity, float32.
  let t0 = Date.now();
  const ccCpu = await cc('cpu', 'float32', 'cc-cpu');
  const cpuMs = Date.now() - t0;
  t0 = Date.now();
  const ccGpu = await cc(GPU, 'float32', 'cc-gpu');
  const gpuMs = Date.now() - t0;
  const relM = maxRel(ccCpu.mntpLosses, ccGpu.mntpLosses), relS = maxRel(ccCpu.losses, ccGpu.losses);
  report({ check: 'ccFinetune float32 cpu vs cuda', mntpCpu: ccCpu.mntpLosses, mntpCuda: ccGpu.mntpLosses, simcseCpu: ccCpu.losses, simcseCuda: ccGpu.losses,
    maxRelMntp: relM, maxRelSimcse: relS, cpuMs, cudaMs: gpuMs, ok: relM < 2e-3 && relS < 2e-2 });
  // 3a. bfloat16 on CUDA (the GPU default), longer: finite, falling.
  t0 = Date.now();
  const ccBf = await cc(GPU, 'bfloat16', 'cc-bf16', { mntpSteps: 40, steps: 60 });
  const ms = Date.now() - t0;
  const ok = ccBf.losses.every(Number.isFinite) && ccBf.mntpLosses.every(Number.isFinite) &&
    mean(ccBf.mntpLosses.slice(-5)) < mean(ccBf.mntpLosses.slice(0, 5)) && mean(ccBf.losses.slice(-5)) < mean(ccBf.losses.slice(0, 5));
  report({ check: 'ccFinetune bfloat16 cuda 40+60 steps', mntp: [mean(ccBf.mntpLosses.slice(0, 5)), mean(ccBf.mntpLosses.slice(-5))], simcse: [mean(ccBf.losses.slice(0, 5)), mean(ccBf.losses.slice(-5))], ms, ok });

  // 2. trainClip parity, float32.
  const imgDir = path.join(tmp, 'images');
  fs.mkdirSync(imgDir);
  const items = await images(imgDir);
  const clip = (device, dtype, out, extra = {}) => l2c.trainClip({
    items, textModel: ccCpu.encoder, tokenizer: ccCpu.tokenizer, vision: 'tiny', imageSize: 32, embedDim: 64, adapterBlocks: 1,
    batchSize: 32, microBatch: 12, epochs: 4, lr: 1e-3, outputDir: path.join(tmp, out), progress: false, checkpointEvery: 1000, seed: 1,
    device, dtype, ...extra,
  });
  t0 = Date.now();
  const clCpu = await clip('cpu', 'float32', 'clip-cpu');
  const clCpuMs = Date.now() - t0;
  t0 = Date.now();
  const clGpu = await clip(GPU, 'float32', 'clip-gpu');
  const clGpuMs = Date.now() - t0;
  const relC = maxRel(clCpu.losses, clGpu.losses);
  report({ check: 'trainClip float32 cpu vs cuda', cpu: clCpu.losses, cuda: clGpu.losses, maxRel: relC, cpuMs: clCpuMs, cudaMs: clGpuMs, ok: relC < 2e-2 });
  // 3b. bfloat16 on CUDA, longer.
  t0 = Date.now();
  const clBf = await clip(GPU, 'bfloat16', 'clip-bf16', { epochs: 30 });
  const ok2 = clBf.losses.every(Number.isFinite) && mean(clBf.losses.slice(-5)) < mean(clBf.losses.slice(0, 5)) - 0.3;
  report({ check: 'trainClip bfloat16 cuda 60 steps', first5: mean(clBf.losses.slice(0, 5)), last5: mean(clBf.losses.slice(-5)), ms: Date.now() - t0, ok: ok2 });
  // 4. Out of memory on the GPU: a catchable typed error, after which smaller work runs.
  if (GPU !== 'cpu') {
    let code = null;
    try {
      const huge = l2c.zeros([2 ** 20, 2 ** 18], { device: GPU }); // 1 TiB of float32
      huge.dispose();
    } catch (e) {
      code = e && e.code;
    }
    let after = false;
    try {
      const a = l2c.randn([1024, 1024], { device: GPU });
      const y = l2c.ops.matmul(a, a);
      after = Number.isFinite(y.to('cpu').toArray()[0]);
      a.dispose();
      y.dispose();
    } catch (e) {
      after = String(e);
    }
    report({ check: 'out of memory is a typed error, then smaller work runs', code, after, ok: code === 'OUT_OF_MEMORY' && after === true });
  }
  const m = l2c.memoryStats();
  report({ check: 'memory after', stats: m });
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(`node smoke: ${failures === 0 ? 'OK' : failures + ' failed'}`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ check: 'exception', error: String(e && e.stack || e), ok: false }));
  process.exit(1);
});
