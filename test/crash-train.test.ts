// crash-train.test.ts: real training runs (ccFinetune, trainClip) in a child process,
// SIGKILLed part-way (often mid-checkpoint, as they checkpoint every step), resume with
// resume: true and end with exactly the losses of an uninterrupted run; log.jsonl holds
// each step once.
import { spawn } from 'child_process';
import sharp from 'sharp';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  ccFinetune, CcFinetuneOptions, CaptionDataset, trainClip, TrainClipOptions, LlamaEncoder, tinyLlamaConfig, trainBpeTokenizer, ClipVisionEncoder,
  saveLlamaPretrained, saveClipVisionPretrained,
} from '../src';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-crash-train-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function dataset(): CaptionDataset {
  const animals = ['dog', 'cat', 'horse', 'bird', 'child', 'man', 'woman', 'boy', 'girl', 'cow'];
  const acts = ['runs', 'sleeps', 'jumps', 'sits', 'plays', 'swims', 'climbs', 'eats', 'walks', 'rests'];
  const places = ['on the grass', 'in the water', 'on a bench', 'near a tree', 'in the snow'];
  const images = [];
  for (let i = 0; i < 60; i++) {
    const a = animals[i % 10], v = acts[Math.floor(i / 10) % 10], p = places[i % 5];
    images.push({ id: `img${i}`, captions: [`a ${a} ${v} ${p}`, `the ${a} ${v} ${p} today`, `one ${a} that ${v} ${p}`] });
  }
  return { format: 'captions', source: 'generated', images };
}

/** Runs a fixture in a child process and SIGKILLs it `delay` ms after it prints `line`; returns what it printed. */
async function killAfter(fixture: string, optFile: string, line: string, delay: number): Promise<string> {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', fixture), optFile], {
    env: { ...process.env, L2C_TS_CACHE: path.join(tmp, 'ts-cache') }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let seen = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    const before = seen.includes(line);
    seen += d.toString();
    if (!before && seen.includes(line)) setTimeout(() => child.kill('SIGKILL'), delay);
  });
  const how = await new Promise<string>((resolve) => child.on('close', (code, signal) => resolve(signal ?? `exit ${code}: ${err}`)));
  expect(how).toBe('SIGKILL');
  return seen;
}

const SIZES = { hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 300 };

function opts(out: string, extra: Partial<CcFinetuneOptions> = {}): CcFinetuneOptions {
  return { data: dataset(), model: 'tiny', presetSizes: SIZES, mntpSteps: 4, mntpBatchSize: 16, steps: 8, batchSize: 16, chunkSize: 8, outputDir: out, progress: false, checkpointEvery: 1, seed: 3, maxLength: 24, ...extra };
}

test('ccFinetune SIGKILLed part-way, then resume: true, gives the losses of an uninterrupted run', async () => {
  const full = await ccFinetune(opts(path.join(tmp, 'full')));
  const out = path.join(tmp, 'killed');
  const optFile = path.join(tmp, 'opts.json');
  fs.writeFileSync(optFile, JSON.stringify(opts(out)));
  const killAt = 2 + Math.floor(Math.random() * 5); // a SimCSE step in 2..6
  const delay = Math.floor(Math.random() * 40);
  const seen = await killAfter('cc-train.js', optFile, `step simcse ${killAt}\n`, delay);
  const lastSeen = Math.max(...[...seen.matchAll(/step simcse (\d+)/g)].map((m) => Number(m[1])));
  expect(lastSeen).toBeLessThan(8);
  const resumed = await ccFinetune(opts(out, { resume: true }));
  expect(resumed.aborted).toBe(false);
  expect(resumed.mntpLosses).toEqual(full.mntpLosses);
  expect(resumed.losses).toEqual(full.losses);
  const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { stage: string; step: number; loss: number });
  expect(log.map((l) => `${l.stage}${l.step}`)).toEqual([...[1, 2, 3, 4].map((s) => `mntp${s}`), ...[1, 2, 3, 4, 5, 6, 7, 8].map((s) => `simcse${s}`)]);
  expect(log.filter((l) => l.stage === 'simcse').map((l) => l.loss)).toEqual(full.losses);
  console.log(`crash-train.test: killed ${delay} ms after SimCSE step ${killAt} (last step seen ${lastSeen}); resumed to step ${resumed.steps}, losses equal to the uninterrupted run`);
}, 120000);

test('trainClip SIGKILLed part-way, then resume: true, gives the losses of an uninterrupted run', async () => {
  // Everything the child needs is on disk: images, the frozen text model and the vision start point.
  const imgDir = path.join(tmp, 'images');
  fs.mkdirSync(imgDir);
  const items: { image: string; file: string; captions: string[] }[] = [];
  for (const [name, r, g, b] of [['red', 220, 30, 30], ['green', 30, 200, 40], ['blue', 30, 40, 220], ['white', 245, 245, 245]] as const)
    for (const v of [0, 1]) {
      const file = path.join(imgDir, `${name}-${v}.png`);
      await sharp({ create: { width: 17 + v * 4, height: 15, channels: 3, background: { r, g: Math.min(255, g + v * 20), b } } }).png().toFile(file);
      items.push({ image: file, file: path.basename(file), captions: [`a ${name} picture`, `the colour ${name}`] });
    }
  const tokenizer = trainBpeTokenizer(items.flatMap((it) => it.captions), { vocabSize: 300, minFrequency: 1 });
  const text = new LlamaEncoder(tinyLlamaConfig({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tokenizer.vocabSize }), { seed: 5 });
  await saveLlamaPretrained(text, path.join(tmp, 'text'), tokenizer);
  text.dispose();
  const vis = new ClipVisionEncoder({ hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, imageSize: 16, patchSize: 4, projectionDim: 16 }, { seed: 3 });
  await saveClipVisionPretrained(vis, path.join(tmp, 'vision0'));
  vis.dispose();
  const o = (out: string, extra: Partial<TrainClipOptions> = {}): TrainClipOptions => ({
    items, textModel: path.join(tmp, 'text'), vision: path.join(tmp, 'vision0'), embedDim: 16, adapterBlocks: 1, batchSize: 4, microBatch: 3, epochs: 5, lr: 3e-3,
    outputDir: out, progress: false, checkpointEvery: 1, seed: 1, ...extra,
  });
  const full = await trainClip(o(path.join(tmp, 'clip-full')));
  expect(full.steps).toBe(10);
  const out = path.join(tmp, 'clip-killed');
  const optFile = path.join(tmp, 'clip-opts.json');
  fs.writeFileSync(optFile, JSON.stringify(o(out)));
  const killAt = 2 + Math.floor(Math.random() * 4);
  const delay = Math.floor(Math.random() * 30);
  const seen = await killAfter('clip-train.js', optFile, `step ${killAt}\n`, delay);
  const lastSeen = Math.max(...[...seen.matchAll(/step (\d+)/g)].map((m) => Number(m[1])));
  expect(lastSeen).toBeLessThan(10);
  const resumed = await trainClip(o(out, { resume: true }));
  expect(resumed.losses).toEqual(full.losses);
  const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number });
  expect(log.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  console.log(`crash-train.test: trainClip killed ${delay} ms after step ${killAt} (last step seen ${lastSeen}); resumed, losses equal to the uninterrupted run`);
}, 120000);
