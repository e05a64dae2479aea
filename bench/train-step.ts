// bench/train-step.ts: the `train-step` suite. Throughput of one optimiser step of each
// training stage, on the presets the trainers build from scratch:
// - ccFinetune (stage 1), presets 'tiny' and 'small' of src/train/cc.ts (CC_PRESETS):
//   * MNTP step: the bidirectional Llama, all parameters trained (as for a from-scratch
//     preset), forward + masked-token loss (20% of the tokens) + backward + AdamW (lr 1e-3,
//     wd 0.01, clip 1); tokens/s = B·S / step time;
//   * SimCSE step: the same encoder with LoRA (r 16, alpha 32, dropout 0.05, all seven
//     projections), B caption pairs through ccFinetune's own gradient-cached step
//     (gradCacheStep of cc.ts: mean pooling, l2-normalised InfoNCE, scale 20) + AdamW;
//     tokens/s = 2·B·S / step time (each sequence is forwarded twice: GradCache).
// - trainClip (stage 2), ViT presets 'tiny' and 'small' of src/models/clip-presets.ts with the
//   TextAdapter (4 blocks) over cached caption features (random rows here, the width of the
//   matching cc preset), the learnable logit scale and the symmetric InfoNCE over the whole
//   batch, the ViT in gradient-cached micro-batches (gradCache of train/gradcache.ts, as
//   trainClip's clipStep) + AdamW (lr 5e-4, wd 0.05 on matrices, clip 1) and the logit-scale
//   clamp; images/s = B / step time.
// Inputs: random token ids (every position real, no padding) and random pixels, prepared
// before the clock starts. Parameters in the trainers' default dtype: float32 on the CPU,
// bfloat16 on CUDA (LoRA adapters float32). Warm-up steps excluded; medians of the timed steps.
import type { DType } from '../src';
import { AdamW, F, LlamaEncoder, ClipVisionEncoder, TextAdapter, tensor, manualSeed, noGrad, tidy, Tensor, Rng } from '../src';
import { record } from '../src/autograd';
import { copyInto } from '../src/nn';
import * as ops from '../src/ops';
import { CC_PRESETS, gradCacheStep } from '../src/train/cc';
import { gradCache } from '../src/train/gradcache';
import { tinyLlamaConfig } from '../src/models/llama-save';
import { clipVisionPreset } from '../src/models/clip-presets';
import { renderSvg } from './chart';
import { BenchOptions, LoadWatch, median, report, sync, writeResults } from './harness';

type Preset = 'tiny' | 'small';

interface Timing {
  times: number[];
  loss: number;
}

/** Runs `warmup` + `reps` steps; seconds of the timed ones (each synchronised). */
function timeSteps(step: () => number, warmup: number, reps: number, device: string): Timing {
  let loss = NaN;
  for (let i = 0; i < warmup; i++) loss = step();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    loss = step();
    sync(device);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  if (!Number.isFinite(loss)) throw new Error(`bench train-step: the loss is ${loss}`);
  return { times, loss };
}

function randomIds(rng: Rng, n: number, vocab: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = 4 + rng.below(vocab - 4); // 0..3: bos, eos, pad, mask
  return ids;
}

interface CcResult {
  mntp: Timing;
  simcse: Timing;
  B: number;
  S: number;
  params: number;
  loraParams: number;
}

/** The trainers' default parameter dtype on a device. */
const paramDtype = (device: string): DType => (device.startsWith('cuda') ? 'bfloat16' : 'float32');

function ccSteps(preset: Preset, device: string, quick: boolean, warmup: number, reps: number): CcResult {
  const p = CC_PRESETS[preset];
  const B = quick ? 8 : 64, S = quick ? 16 : 64;
  const rng = new Rng(7, 3);
  manualSeed(11);
  const enc = new LlamaEncoder(tinyLlamaConfig({ ...p, bosTokenId: 0, eosTokenId: 1, padTokenId: 2 }), { seed: 1, device, dtype: paramDtype(device) });
  try {
    enc.train();
    // ---- MNTP: full-parameter training, as ccFinetune does for a from-scratch preset
    enc.requiresGrad_(true);
    const named = enc.namedParameters().filter(([, t]) => t.requiresGrad);
    const params = named.reduce((a, [, t]) => a + t.size, 0);
    const opt = new AdamW(named, { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1 });
    const ids = randomIds(rng, B * S, p.vocabSize);
    const masked = ids.slice();
    const labels = new Int32Array(B * S).fill(-100);
    for (let i = 0; i < ids.length; i++) if (rng.float() < 0.2) { labels[i] = ids[i]; masked[i] = 3; }
    const ones = new Int32Array(B * S).fill(1);
    const mntp = timeSteps(() => {
      const loss = tidy(() => {
        const l = enc.mntpLoss(enc.forward(tensor(masked, [B, S], { dtype: 'int32', device }), tensor(ones, [B, S], { dtype: 'int32', device })), tensor(labels, [B, S], { dtype: 'int32', device }));
        const v = l.item();
        l.backward();
        return v;
      });
      opt.step();
      opt.zeroGrad();
      return loss;
    }, warmup, reps, device);
    opt.dispose();
    // ---- SimCSE with LoRA through ccFinetune's gradient-cached step
    enc.requiresGrad_(false);
    enc.withLora({ r: 16, alpha: 32, dropout: 0.05, seed: 2 });
    const loraNamed = enc.namedParameters().filter(([, t]) => t.requiresGrad);
    const loraParams = loraNamed.reduce((a, [, t]) => a + t.size, 0);
    const opt2 = new AdamW(loraNamed, { lr: 5e-3, weightDecay: 0.01, maxGradNorm: 1 });
    const group = () => ({ ids: randomIds(rng, B * S, p.vocabSize), mask: ones, embed: ones, S, n: B });
    const q = group(), d = group();
    const simcse = timeSteps(() => {
      const loss = gradCacheStep(enc, [q, d], 64, 'mean', device, (r) => F.infoNCE(F.l2Normalize(r[0]), F.l2Normalize(r[1]), { scale: 20 }));
      opt2.step();
      opt2.zeroGrad();
      return loss;
    }, warmup, reps, device);
    opt2.dispose();
    return { mntp, simcse, B, S, params, loraParams };
  } finally {
    enc.dispose();
  }
}

/** exp(x) of a one-element tensor, differentiable (trainClip's learnable logit scale). */
function expScalar(x: Tensor): Tensor {
  const v = Math.exp(noGrad(() => x.item()));
  const y = tensor([v], [], { device: x.device });
  return record('exp', y, [x], [], (g) => [ops.scale(g, v)]);
}

interface ClipResult {
  step: Timing;
  B: number;
  micro: number;
  imageSize: number;
  params: number;
}

function clipSteps(preset: Preset, device: string, quick: boolean, warmup: number, reps: number): ClipResult {
  const B = quick ? 16 : 256, micro = quick ? 8 : 64, embedDim = 256;
  const hidden = CC_PRESETS[preset].hiddenSize;
  manualSeed(13);
  const vision = new ClipVisionEncoder(clipVisionPreset(preset, { projectionDim: embedDim }), { seed: 1, device, dtype: paramDtype(device) });
  const adapter = new TextAdapter(hidden, embedDim, { numBlocks: 4, seed: 2, device, dtype: paramDtype(device) });
  const logitScale = tensor([Math.log(1 / 0.07)], [], { device }).setRequiresGrad(true);
  try {
    vision.requiresGrad_(true).train();
    adapter.requiresGrad_(true).train();
    const named: [string, Tensor][] = [
      ...vision.namedParameters().map(([n, t]) => [`vision.${n}`, t] as [string, Tensor]),
      ...adapter.namedParameters().map(([n, t]) => [`adapter.${n}`, t] as [string, Tensor]),
      ['logit_scale', logitScale],
    ];
    const params = named.reduce((a, [, t]) => a + t.size, 0);
    const opt = new AdamW(named, { lr: 5e-4, weightDecay: 0.05, maxGradNorm: 1, decay: (n, p) => n !== 'logit_scale' && p.ndim >= 2 });
    const size = vision.config.imageSize, per = 3 * size * size;
    const rng = new Rng(5, 1);
    const pix = new Float32Array(B * per);
    for (let i = 0; i < pix.length; i++) pix[i] = rng.float() * 2 - 1;
    const textRows = new Float32Array(B * hidden);
    for (let i = 0; i < textRows.length; i++) textRows[i] = rng.float() * 2 - 1;
    const step = timeSteps(() => {
      const images = { n: B, embed: (s: number, e: number) => vision.forward(tensor(pix.subarray(s * per, e * per), [e - s, 3, size, size], { device })).embeds! };
      const loss = gradCache([images], micro, ([img]) => {
        const txt = adapter.forward(tensor(textRows, [B, hidden], { device }));
        return F.infoNCE(F.l2Normalize(img), F.l2Normalize(txt), { scale: expScalar(logitScale), symmetric: true });
      });
      opt.step();
      opt.zeroGrad();
      noGrad(() => tidy(() => {
        const ls = logitScale.item();
        const c = Math.min(Math.log(100), Math.max(0, ls));
        if (c !== ls) copyInto(logitScale, tensor([c], []));
      }));
      return loss;
    }, warmup, reps, device);
    opt.dispose();
    return { step, B, micro, imageSize: size, params };
  } finally {
    vision.dispose();
    adapter.dispose();
    logitScale.dispose();
  }
}

/** The train-step suite (see the file comment). */
export function runTrainStep(o: BenchOptions): void {
  const { device, quick } = o;
  const load = new LoadWatch();
  const presets: Preset[] = quick ? ['tiny'] : ['tiny', 'small'];
  const warmup = 1, reps = quick ? 2 : 4;
  const rows: Record<string, string | number | null>[] = [];
  const how = 'internals: gradCacheStep of train/cc.ts (SimCSE); the MNTP and CLIP steps rebuilt as in cc.ts / clip.ts from the public API + gradCache';
  for (const preset of presets) {
    const cc = ccSteps(preset, device, quick, warmup, reps);
    const mt = median(cc.mntp.times), st = median(cc.simcse.times);
    rows.push({
      stage: 'ccFinetune MNTP', preset, batch: `${cc.B} x ${cc.S} tokens`, params: cc.params, 'step ms': mt * 1e3,
      throughput: (cc.B * cc.S) / mt, unit: 'tokens/s', loss: cc.mntp.loss, built: 'rebuilt (cc.ts MNTP loop body)',
    });
    rows.push({
      stage: 'ccFinetune SimCSE', preset, batch: `${cc.B} pairs x ${cc.S} tokens`, params: cc.loraParams, 'step ms': st * 1e3,
      throughput: (2 * cc.B * cc.S) / st, unit: 'tokens/s', loss: cc.simcse.loss, built: 'internal (cc.ts gradCacheStep)',
    });
    console.log(`done: ccFinetune ${preset}`);
  }
  for (const preset of presets) {
    const c = clipSteps(preset, device, quick, warmup, reps);
    const t = median(c.step.times);
    rows.push({
      stage: 'trainClip', preset, batch: `${c.B} images (micro ${c.micro}, ${c.imageSize}px)`, params: c.params, 'step ms': t * 1e3,
      throughput: c.B / t, unit: 'images/s', loss: c.step.loss, built: 'rebuilt (clip.ts clipStep + gradCache)',
    });
    console.log(`done: trainClip ${preset}`);
  }
  const bars = (unit: string) => {
    const rs = rows.filter((r) => r.unit === unit);
    const stages = [...new Set(rs.map((r) => r.stage as string))];
    return stages.map((s) => ({ name: s, points: rs.filter((r) => r.stage === s).map((r) => ({ x: r.preset as string, y: r.throughput as number })) }));
  };
  const svg = renderSvg([
    { kind: 'bar', title: 'ccFinetune step (stage 1)', xLabel: 'preset', yLabel: 'tokens/s', series: bars('tokens/s'), note: 'MNTP: B·S tokens; SimCSE: 2·B·S (GradCache runs each twice)' },
    { kind: 'bar', title: 'trainClip step (stage 2)', xLabel: 'ViT preset', yLabel: 'images/s', series: bars('images/s'), note: 'ViT + adapter + InfoNCE over the batch, micro-batched' },
  ], { title: `training steps, forward + backward + AdamW (${device}, ${paramDtype(device)})` });
  const files = writeResults('train-step', o, load, rows, {
    method: how,
    timing: `${warmup} warm-up step(s) excluded, median of ${reps} timed steps (each ending with the optimiser step; synchronised on a GPU)`,
    inputs: 'random token ids (all positions real, no padding) and random pixels / caption features, prepared before timing',
    dtype: paramDtype(device),
    presets: Object.fromEntries(presets.map((p) => [p, { llama: CC_PRESETS[p], vit: clipVisionPreset(p, { projectionDim: 256 }) }])),
  }, svg);
  report(rows, files, load);
}
