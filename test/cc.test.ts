// cc.test.ts: ccFinetune end to end on real captions with a very small from-scratch model:
// the losses fall, the output directory has its parts, and a run interrupted (in MNTP and
// in SimCSE) and resumed from its checkpoints gives exactly the losses of an uninterrupted run.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ccFinetune, CcFinetuneOptions, LlamaEncoder, Tokenizer, loadCaptions, CaptionDataset, evaluateEncoderCRA, loadPeftAdapter } from '../src';

const DATA = ['../shared/data', '../../shared/data', process.env.LLM2CLIP_SHARED_DATA ?? ''].map((d) => path.resolve(__dirname, '..', d, 'flickr8k/Flickr8k.token.txt')).find((f) => fs.existsSync(f));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-cc-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A small caption set: real Flickr8k captions when present, else generated ones. */
async function dataset(): Promise<CaptionDataset> {
  if (DATA) {
    const ds = await loadCaptions(DATA, { split: 'train' });
    return { ...ds, images: ds.images.slice(0, 150) };
  }
  console.warn('cc.test: ../shared/data/flickr8k is absent; using generated captions');
  const animals = ['dog', 'cat', 'horse', 'bird', 'child', 'man', 'woman', 'boy', 'girl', 'cow'];
  const acts = ['runs', 'sleeps', 'jumps', 'sits', 'plays', 'swims', 'climbs', 'eats', 'walks', 'rests'];
  const places = ['on the grass', 'in the water', 'on a bench', 'near a tree', 'in the snow'];
  const images = [];
  for (let i = 0; i < 150; i++) {
    const a = animals[i % 10], v = acts[Math.floor(i / 10) % 10], p = places[i % 5];
    images.push({ id: `img${i}`, captions: [`a ${a} ${v} ${p}`, `the ${a} ${v} ${p} today`, `one ${a} that ${v} ${p}`] });
  }
  return { format: 'captions', source: 'generated', images };
}

const SIZES = { hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 500 };

function opts(ds: CaptionDataset, out: string, extra: Partial<CcFinetuneOptions> = {}): CcFinetuneOptions {
  return { data: ds, model: 'tiny', presetSizes: SIZES, mntpSteps: 6, mntpBatchSize: 24, steps: 6, batchSize: 24, chunkSize: 10, outputDir: out, progress: false, checkpointEvery: 2, seed: 7, maxLength: 32, ...extra };
}

test('a tiny run lowers both losses and writes base/, adapter/, log.jsonl, metrics.json', async () => {
  const ds = await dataset();
  const out = path.join(tmp, 'run');
  const r = await ccFinetune(opts(ds, out, { mntpSteps: 25, steps: 150, mntpLr: 3e-3 }));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  expect(r.mntpLosses.length).toBe(25);
  expect(r.losses.length).toBe(150);
  expect(r.losses.every(Number.isFinite)).toBe(true);
  expect(mean(r.mntpLosses.slice(-5))).toBeLessThan(mean(r.mntpLosses.slice(0, 5)) - 0.2);
  console.log(`cc.test losses: MNTP ${mean(r.mntpLosses.slice(0, 5)).toFixed(3)} -> ${mean(r.mntpLosses.slice(-5)).toFixed(3)}, SimCSE ${mean(r.losses.slice(0, 5)).toFixed(3)} -> ${mean(r.losses.slice(-5)).toFixed(3)}`);
  expect(mean(r.losses.slice(-5))).toBeLessThan(mean(r.losses.slice(0, 5)) - 0.2);
  expect(fs.readdirSync(out).sort()).toEqual(['adapter', 'base', 'checkpoints', 'log.jsonl', 'metrics.json', 'tokenizer.json']);
  expect(fs.readdirSync(path.join(out, 'base')).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
  const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  expect(log.length).toBe(175);
  expect(log[0]).toMatchObject({ stage: 'mntp', step: 1, totalSteps: 25 });
  const adapter = await loadPeftAdapter(path.join(out, 'adapter'));
  expect(adapter.config.r).toBe(16);
  expect(Object.keys(adapter.tensors).some((k) => k.startsWith('base_model.model.layers.0.self_attn.q_proj.lora_A'))).toBe(true);
  // The written base + adapter reproduce the trained encoder's CRA.
  const test = { ...ds, images: ds.images.slice(0, 40) };
  const direct = await evaluateEncoderCRA({ encoder: r.encoder, tokenizer: r.tokenizer, dataset: test });
  const enc = await LlamaEncoder.fromPretrained(path.join(out, 'base'), { lmHead: false });
  await enc.loadLora(path.join(out, 'adapter'));
  const again = await evaluateEncoderCRA({ encoder: enc, tokenizer: Tokenizer.fromDir(path.join(out, 'base')), dataset: test });
  expect(again).toEqual(direct);
}, 240000);

test('interrupted (in MNTP, then in SimCSE) and resumed = uninterrupted, loss for loss', async () => {
  const ds = await dataset();
  const full = await ccFinetune(opts(ds, path.join(tmp, 'full')));
  const out = path.join(tmp, 'resumed');
  const stopAt = (stage: string, step: number) => {
    const ac = new AbortController();
    return { signal: ac.signal, onStep: (i: { stage: string; step: number }) => { if (i.stage === stage && i.step === step) ac.abort(); } };
  };
  const a = await ccFinetune(opts(ds, out, stopAt('mntp', 3)));
  expect(a.aborted).toBe(true);
  expect(a.mntpLosses.length).toBe(3);
  const b = await ccFinetune(opts(ds, out, { resume: true, ...stopAt('simcse', 4) }));
  expect(b.aborted).toBe(true);
  const c = await ccFinetune(opts(ds, out, { resume: true }));
  expect(c.aborted).toBe(false);
  expect(c.mntpLosses).toEqual(full.mntpLosses);
  expect(c.losses).toEqual(full.losses);
}, 240000);

test('bad options are typed errors', async () => {
  const ds = await dataset();
  await expect(ccFinetune(opts(ds, path.join(tmp, 'bad'), { batchSize: 0 }))).rejects.toThrow(/batchSize/);
  await expect(ccFinetune({ data: path.join(tmp, 'missing.txt'), progress: false, outputDir: path.join(tmp, 'bad2') })).rejects.toThrow(/missing.txt/);
});
