// nan-policy.test.ts: a NaN / Infinity loss or gradient norm in ccFinetune. nanPolicy
// 'stop' (default) throws NON_FINITE naming the step and the last good checkpoint, writes
// nothing, and resume: true continues from that checkpoint to the uninterrupted result;
// 'skip' drops the step (parameters, optimizer moments and step count untouched) and
// counts it. NaNs come from a test hook (a poisoned loss or gradient) and from a real
// poisoned input (a NaN weight in the given model).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ccFinetune, CcFinetuneOptions, CaptionDataset, LlamaEncoder, tinyLlamaConfig, trainBpeTokenizer, Llm2ClipError, memoryStats } from '../src';
import { setStepFaultHook, StepFault } from '../src/train/nan';
import { expectCodeAsync } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-nan-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => setStepFaultHook(null));

function dataset(): CaptionDataset {
  const animals = ['dog', 'cat', 'horse', 'bird', 'child', 'man', 'woman', 'boy', 'girl', 'cow'];
  const acts = ['runs', 'sleeps', 'jumps', 'sits', 'plays', 'swims'];
  const images = [];
  for (let i = 0; i < 40; i++) {
    const a = animals[i % 10], v = acts[Math.floor(i / 10) % 6];
    images.push({ id: `img${i}`, captions: [`a ${a} ${v} here`, `the ${a} ${v} today`, `one ${a} that ${v}`] });
  }
  return { format: 'captions', source: 'generated', images };
}
const SIZES = { hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 300 };
function opts(out: string, extra: Partial<CcFinetuneOptions> = {}): CcFinetuneOptions {
  return { data: dataset(), model: 'tiny', presetSizes: SIZES, mntpSteps: 3, mntpBatchSize: 12, steps: 6, batchSize: 12, chunkSize: 6, outputDir: out, progress: false, checkpointEvery: 2, seed: 5, maxLength: 16, ...extra };
}
const readLog = (out: string) => fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { stage: string; step: number; loss: number | null; skipped?: boolean });

let full: Awaited<ReturnType<typeof ccFinetune>>;
beforeAll(async () => {
  full = await ccFinetune(opts(path.join(tmp, 'full')));
  expect(full.losses.every(Number.isFinite)).toBe(true);
  expect(full.skippedSteps).toBe(0);
}, 60000);

test("'stop' (default): a NaN loss at SimCSE step 5 throws NON_FINITE naming the step and the last good checkpoint; nothing is written; resume: true finishes as if uninterrupted", async () => {
  const out = path.join(tmp, 'stop');
  setStepFaultHook((f) => (f.stage === 'simcse' && f.step === 5 ? NaN : undefined));
  const live = memoryStats().liveTensors;
  const e = await expectCodeAsync(ccFinetune(opts(out)), 'NON_FINITE', /loss is NaN at SimCSE step 5/, /simcse-0000004/, /nanPolicy: 'skip'/);
  expect(e).toBeInstanceOf(Llm2ClipError);
  expect(fs.readFileSync(path.join(out, 'checkpoints', 'LATEST'), 'utf8').trim()).toBe('simcse-0000004');
  expect(fs.existsSync(path.join(out, 'adapter'))).toBe(false);
  expect(fs.existsSync(path.join(out, 'metrics.json'))).toBe(false);
  expect(fs.readdirSync(path.join(out, 'checkpoints')).filter((f) => f.startsWith('.'))).toEqual([]);
  // the model, the optimizer state and the loaded checkpoint were freed on the way out
  expect(memoryStats().liveTensors).toBe(live);
  setStepFaultHook(null);
  const r = await ccFinetune(opts(out, { resume: true }));
  expect(r.losses).toEqual(full.losses);
  expect(r.mntpLosses).toEqual(full.mntpLosses);
  expect(readLog(out).map((l) => `${l.stage}${l.step}`)).toEqual(['mntp1', 'mntp2', 'mntp3', ...[1, 2, 3, 4, 5, 6].map((s) => `simcse${s}`)]);
}, 60000);

test("'stop' on a non-finite gradient norm (a finite loss): NON_FINITE names the gradient norm", async () => {
  const out = path.join(tmp, 'stop-grad');
  setStepFaultHook((f) => {
    if (f.stage === 'mntp' && f.step === 2) (f.params[0][1].grad!.view() as Float32Array)[0] = Infinity;
  });
  await expectCodeAsync(ccFinetune(opts(out)), 'NON_FINITE', /gradient norm is (NaN|Infinity) at MNTP step 2/, /no checkpoint was written yet/);
  expect(fs.existsSync(path.join(out, 'checkpoints', 'LATEST'))).toBe(false);
  expect(fs.existsSync(path.join(out, 'base'))).toBe(false);
}, 60000);

test("'skip': a poisoned gradient at SimCSE step 3 changes no parameter, moment or step count; later steps go on; the skip is counted and logged", async () => {
  const out = path.join(tmp, 'skip');
  const snap = (f: StepFault) => ({
    params: f.params.map(([, p]) => Array.from(p.toArray())),
    moments: Object.entries(f.optimizer.stateDict().tensors).map(([, t]) => Array.from(t.toArray())),
    count: f.optimizer.stepCount,
  });
  const seen: Record<number, ReturnType<typeof snap>> = {};
  setStepFaultHook((f) => {
    if (f.stage !== 'simcse') return;
    if (f.step === 3 || f.step === 4 || f.step === 5) seen[f.step] = snap(f);
    if (f.step === 3) (f.params[1][1].grad!.view() as Float32Array)[0] = NaN;
  });
  const r = await ccFinetune(opts(out, { nanPolicy: 'skip' }));
  expect(r.skippedSteps).toBe(1);
  expect(r.losses.length).toBe(6);
  expect(r.losses.every(Number.isFinite)).toBe(true); // the loss was finite; the gradient was not
  // step 3 updated nothing: the state seen by step 4 is the state seen by step 3 ...
  expect(seen[4].params).toEqual(seen[3].params);
  expect(seen[4].moments).toEqual(seen[3].moments);
  expect(seen[4].count).toBe(seen[3].count);
  // ... and step 4 did update
  expect(seen[5].count).toBe(seen[4].count + 1);
  expect(seen[5].params).not.toEqual(seen[4].params);
  const log = readLog(out).filter((l) => l.stage === 'simcse');
  expect(log.map((l) => !!l.skipped)).toEqual([false, false, true, false, false, false]);
  expect(JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')).skippedSteps).toBe(1);
}, 60000);

test("'skip' survives a checkpoint round trip: NaN losses come back as NaN and the count is kept", async () => {
  const out = path.join(tmp, 'skip-resume');
  const ac = new AbortController();
  setStepFaultHook((f) => (f.stage === 'mntp' && f.step === 2 ? Infinity : f.stage === 'simcse' && f.step === 2 ? NaN : undefined));
  const a = await ccFinetune(opts(out, { nanPolicy: 'skip', signal: ac.signal, onStep: (i) => { if (i.stage === 'simcse' && i.step === 3) ac.abort(); } }));
  expect(a.aborted).toBe(true);
  expect(a.skippedSteps).toBe(2);
  setStepFaultHook(null);
  const b = await ccFinetune(opts(out, { nanPolicy: 'skip', resume: true }));
  expect(b.skippedSteps).toBe(2);
  expect(Number.isNaN(b.mntpLosses[1])).toBe(true); // JSON keeps neither NaN nor Infinity: both come back as NaN
  expect(Number.isNaN(b.losses[1])).toBe(true);
  expect(b.losses.filter((l) => !Number.isFinite(l)).length).toBe(1);
  expect(readLog(out).filter((l) => l.skipped).map((l) => `${l.stage}${l.step}`)).toEqual(['mntp2', 'simcse2']);
}, 60000);

test('a real poisoned input (a NaN weight in the model): stop throws at step 1 writing nothing; skip skips every step and leaves the LoRA weights as initialised', async () => {
  const ds = dataset();
  const tokenizer = trainBpeTokenizer(ds.images.flatMap((im) => im.captions), { vocabSize: 300, minFrequency: 1 });
  const make = () => {
    const enc = new LlamaEncoder(tinyLlamaConfig({ ...SIZES, vocabSize: tokenizer.vocabSize }), { seed: 2 });
    const [, w] = enc.namedParameters().find(([n]) => n.endsWith('embed_tokens.weight'))!;
    (w.view() as Float32Array).fill(NaN, 0, w.size);
    return enc;
  };
  const out = path.join(tmp, 'poison-stop');
  await expectCodeAsync(ccFinetune(opts(out, { model: make(), tokenizer, mntpSteps: 0 })), 'NON_FINITE', /loss is NaN at SimCSE step 1/, /no checkpoint was written yet/);
  expect(fs.existsSync(path.join(out, 'checkpoints'))).toBe(false);
  const enc = make();
  let lora0: number[][] | null = null;
  setStepFaultHook((f) => {
    if (f.step === 1) lora0 = f.params.map(([, p]) => Array.from(p.toArray()));
  });
  const r = await ccFinetune(opts(path.join(tmp, 'poison-skip'), { model: enc, tokenizer, mntpSteps: 0, nanPolicy: 'skip' }));
  expect(r.skippedSteps).toBe(6);
  expect(r.losses.every(Number.isNaN)).toBe(true);
  expect(lora0).not.toBeNull();
  const after = enc.namedParameters().filter(([n]) => n.includes('lora')).map(([, p]) => Array.from(p.toArray()));
  expect(after).toEqual(lora0);
}, 60000);

test('nanPolicy must be stop or skip', async () => {
  await expectCodeAsync(ccFinetune(opts(path.join(tmp, 'bad'), { nanPolicy: 'ignore' as 'stop' })), 'INVALID_ARGUMENT', /nanPolicy/);
});
