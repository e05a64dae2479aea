// bench/clip-presets.ts: standalone timing of the clipVisionPreset ViTs on the CPU: forward +
// backward of a batch of 64 random images (loss = sum of squared embeds), 4 iterations.
// Run: npx tsc -p . && node dist/bench/clip-presets.js [tiny,small] [imageSize]
import { ClipVisionEncoder, randn, F, tidy, getNumThreads } from '../src';
import { clipVisionPreset } from '../src/models/clip-presets';
const names = (process.argv[2] ?? 'tiny,small').split(',') as ('tiny'|'small')[];
for (const name of names) {
  const cfg = clipVisionPreset(name, { projectionDim: 128, imageSize: process.argv[3] ? Number(process.argv[3]) : undefined });
  const enc = new ClipVisionEncoder(cfg, { seed: 1 });
  const B = 64;
  const times: number[] = [];
  for (let it = 0; it < 4; it++) {
    const px = randn([B, 3, cfg.imageSize, cfg.imageSize], { seed: it + 1 });
    const t0 = performance.now();
    tidy(() => { const o = enc.forward(px); const l = F.sum(F.mul(o.embeds!, o.embeds!)); l.backward(); });
    times.push(performance.now() - t0);
    enc.zeroGrad(); px.dispose();
  }
  console.log(name, cfg.imageSize, 'params', enc.numParameters(), 'threads', getNumThreads(), 'fwd+bwd B=64 ms', times.map((t) => t.toFixed(0)).join(' '));
  enc.dispose();
}
