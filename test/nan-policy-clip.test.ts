// nan-policy-clip.test.ts: nanPolicy in trainClip (see nan-policy.test.ts for ccFinetune):
// 'stop' throws NON_FINITE keeping the last good checkpoint and resume finishes as if
// uninterrupted; 'skip' leaves parameters, logit scale and optimizer state untouched.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { trainClip, TrainClipOptions, LlamaEncoder, trainBpeTokenizer, tinyLlamaConfig, ClipVisionEncoder, memoryStats } from '../src';
import type { ImageCaptionItem } from '../src/data/images';
import { setStepFaultHook, StepFault } from '../src/train/nan';
import { expectCodeAsync } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-nanclip-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => setStepFaultHook(null));

let items: ImageCaptionItem[] = [];
let encoder: LlamaEncoder;
let tokenizer: ReturnType<typeof trainBpeTokenizer>;
const COLOURS: [string, number, number, number][] = [['red', 220, 30, 30], ['green', 30, 200, 40], ['blue', 30, 40, 220], ['yellow', 230, 220, 30], ['white', 245, 245, 245], ['black', 10, 10, 10]];

beforeAll(async () => {
  fs.mkdirSync(path.join(tmp, 'images'));
  for (const [name, r, g, b] of COLOURS)
    for (const v of [0, 1]) {
      const file = path.join(tmp, 'images', `${name}-${v}.png`);
      await sharp({ create: { width: 17 + v * 5, height: 15, channels: 3, background: { r, g: Math.min(255, g + v * 20), b } } }).png().toFile(file);
      items.push({ image: file, file: path.basename(file), captions: [`a ${name} picture`, `the colour ${name}`] });
    }
  tokenizer = trainBpeTokenizer(items.flatMap((it) => it.captions), { vocabSize: 300, minFrequency: 1 });
  encoder = new LlamaEncoder(tinyLlamaConfig({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tokenizer.vocabSize }), { seed: 5 });
});

function opts(out: string, extra: Partial<TrainClipOptions> = {}): TrainClipOptions {
  return {
    items, textModel: encoder, tokenizer, vision: new ClipVisionEncoder({ hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, imageSize: 16, patchSize: 4, projectionDim: 16 }, { seed: 3 }),
    embedDim: 16, adapterBlocks: 1, batchSize: 6, microBatch: 4, epochs: 4, lr: 3e-3, outputDir: out, progress: false, checkpointEvery: 2, seed: 1, ...extra,
  };
}

test("'stop': a NaN loss at step 5 throws NON_FINITE naming the step-4 checkpoint; resume: true gives the uninterrupted losses", async () => {
  const full = await trainClip(opts(path.join(tmp, 'full')));
  expect(full.steps).toBe(8);
  expect(full.skippedSteps).toBe(0);
  const out = path.join(tmp, 'stop');
  setStepFaultHook((f) => (f.step === 5 ? NaN : undefined));
  const o = opts(out);
  const live = memoryStats().liveTensors;
  await expectCodeAsync(trainClip(o), 'NON_FINITE', /trainClip: the loss is NaN at step 5/, /step-0000004/);
  expect(memoryStats().liveTensors).toBe(live); // adapter, logit scale, optimizer freed; the caller's vision encoder kept
  expect(fs.readFileSync(path.join(out, 'checkpoints', 'LATEST'), 'utf8').trim()).toBe('step-0000004');
  expect(fs.existsSync(path.join(out, 'vision'))).toBe(false);
  setStepFaultHook(null);
  const r = await trainClip(opts(out, { resume: true }));
  expect(r.losses).toEqual(full.losses);
}, 60000);

test("'skip': a poisoned logit-scale gradient at step 3 changes nothing, is counted and logged; training goes on", async () => {
  const snap = (f: StepFault) => ({ params: f.params.map(([, p]) => Array.from(p.toArray())), moments: Object.values(f.optimizer.stateDict().tensors).map((t) => Array.from(t.toArray())), count: f.optimizer.stepCount });
  const seen: Record<number, ReturnType<typeof snap>> = {};
  setStepFaultHook((f) => {
    if (f.step >= 3 && f.step <= 5) seen[f.step] = snap(f);
    if (f.step === 3) {
      const ls = f.params.find(([n]) => n === 'logit_scale')![1];
      (ls.grad!.view() as Float32Array)[0] = -Infinity;
    }
  });
  const out = path.join(tmp, 'skip');
  const r = await trainClip(opts(out, { nanPolicy: 'skip' }));
  expect(r.skippedSteps).toBe(1);
  expect(r.steps).toBe(8);
  expect(seen[4]).toEqual(seen[3]);
  expect(seen[5].count).toBe(seen[4].count + 1);
  const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; skipped?: boolean });
  expect(log.filter((l) => l.skipped).map((l) => l.step)).toEqual([3]);
  expect(JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')).skippedSteps).toBe(1);
  await expectCodeAsync(trainClip(opts(path.join(tmp, 'bad'), { nanPolicy: 'never' as 'skip' })), 'INVALID_ARGUMENT', /nanPolicy/);
}, 60000);
