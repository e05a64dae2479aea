// crash-train.test.ts: a real training run SIGKILLed part-way (often mid-checkpoint, as it
// checkpoints every step) resumes with resume: true and ends with exactly the losses of
// an uninterrupted run; log.jsonl holds each step once.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ccFinetune, CcFinetuneOptions, CaptionDataset } from '../src';

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
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'cc-train.js'), optFile], {
    env: { ...process.env, L2C_TS_CACHE: path.join(tmp, 'ts-cache') }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let seen = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    seen += d.toString();
    if (seen.includes(`step simcse ${killAt}\n`)) setTimeout(() => child.kill('SIGKILL'), delay);
  });
  const how = await new Promise<string>((resolve) => child.on('close', (code, signal) => resolve(signal ?? `exit ${code}: ${err}`)));
  expect(how).toBe('SIGKILL');
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
