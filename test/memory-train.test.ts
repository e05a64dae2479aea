// memory-train.test.ts: no leaks across the stack. After a ccFinetune and a trainClip run
// (their returned modules disposed) the live tensor count, the native bytes in use and the
// tensors left to the garbage collector are back where they started; 10,000 op cycles hold
// the process's RSS flat.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { spawnSync } from 'child_process';
import type { CaptionDataset } from '../src';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-memtrain-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function captions(): CaptionDataset {
  const animals = ['dog', 'cat', 'horse', 'bird', 'child', 'man'];
  const acts = ['runs', 'sleeps', 'jumps', 'sits', 'plays'];
  const images = Array.from({ length: 60 }, (_, i) => {
    const a = animals[i % 6], v = acts[Math.floor(i / 6) % 5];
    return { id: `img${i}`, captions: [`a ${a} ${v} on the grass`, `the ${a} ${v} today`, `one ${a} that ${v}`] };
  });
  return { format: 'captions', source: 'generated', images };
}


test('ccFinetune then trainClip (float32 and bfloat16): tensors and native bytes back to baseline, none left to the GC', async () => {
  // In a child Node with --expose-gc (the compiled package): after each run and a full GC,
  // no tensor may have been reclaimed by the garbage collector (every intermediate is
  // disposed explicitly), and disposing the returned modules returns the live count and
  // the native bytes to where they started. (AdamW's bfloat16 masters once leaked a
  // detached view per parameter: 82 tensors for a tiny trainClip.)
  const dir = path.join(tmp, 'img');
  fs.mkdirSync(dir, { recursive: true });
  const items = [];
  for (let i = 0; i < 12; i++) {
    const f = path.join(dir, `${i}.png`);
    await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: i * 20, g: 255 - i * 20, b: 90 } } }).png().toFile(f);
    items.push({ image: f, file: `${i}.png`, captions: [`colour ${i}`] });
  }
  const script = `
    const l = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'src'))});
    const path = require('path');
    const tmp = ${JSON.stringify(tmp)};
    const ds = ${JSON.stringify(captions())};
    const items = ${JSON.stringify(items)};
    const settle = () => new Promise((r) => { global.gc(); setImmediate(() => { global.gc(); setImmediate(r); }); });
    const snap = () => { const m = l.memoryStats(); return { live: m.liveTensors, bytes: m.cpu.allocatedBytes, collected: m.collectedUndisposed }; };
    (async () => {
      await settle();
      const base = snap();
      const out = { base, runs: [] };
      for (const dtype of ['float32', 'bfloat16']) {
        const cc = await l.ccFinetune({
          data: ds, model: 'tiny', dtype, presetSizes: { hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 300 },
          mntpSteps: 3, mntpBatchSize: 12, steps: 3, batchSize: 12, chunkSize: 5, outputDir: path.join(tmp, 'cc-' + dtype), progress: false, checkpointEvery: 2, seed: 3, maxLength: 24,
        });
        const clip = await l.trainClip({
          items, textModel: cc.encoder, tokenizer: cc.tokenizer, vision: 'tiny', imageSize: 16, embedDim: 16, adapterBlocks: 1, batchSize: 6, microBatch: 4, epochs: 2,
          outputDir: path.join(tmp, 'clip-' + dtype), progress: false, checkpointEvery: 1, seed: 1, dtype,
        });
        await settle();
        const during = snap();
        cc.encoder.dispose();
        clip.vision.dispose();
        clip.adapter.dispose();
        await settle();
        out.runs.push({ dtype, steps: clip.steps, during, after: snap() });
      }
      console.log(JSON.stringify(out));
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 120000 });
  expect(r.stderr).toBe('');
  const out = JSON.parse(r.stdout) as { base: Snap; runs: { dtype: string; steps: number; during: Snap; after: Snap }[] };
  expect(out.runs.map((x) => x.dtype)).toEqual(['float32', 'bfloat16']);
  for (const run of out.runs) {
    expect(run.steps).toBe(4);
    expect(run.during.collected).toBe(out.base.collected);
    expect(run.after).toEqual(out.base);
  }
}, 120000);

interface Snap {
  live: number;
  bytes: number;
  collected: number;
}

test('10,000 op cycles (randn, matmul, softmax, dispose) hold RSS flat', () => {
  // In a child Node with --expose-gc (the compiled package, dist/). Each cycle allocates
  // ~37 KB natively: a leak of it would be ~370 MB over 10,000 cycles.
  // (a) A synchronous loop (no GC forced, the event loop never turns, so Node runs no
  //     finaliser of the dead JS handles): 10,000 cycles after 1,000 of warm-up. Before
  //     small blocks were cached this grew ~250 MB (freed holes pinned by the handles).
  // (b) RSS after a full GC and a turn of the event loop, every 1,000 cycles: flat.
  const script = `
    const l = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'src'))});
    const cycle = () => l.tidy(() => l.ops.softmax(l.ops.matmul(l.randn([48, 64]), l.randn([64, 48]))).dispose());
    const settle = () => new Promise((r) => { global.gc(); setImmediate(() => { global.gc(); r(); }); });
    (async () => {
      for (let i = 0; i < 1000; i++) cycle();
      const s0 = process.memoryUsage().rss;
      for (let i = 0; i < 10000; i++) cycle();
      const syncGrowth = process.memoryUsage().rss - s0;
      const rss = [];
      for (let k = 1; k <= 6; k++) {
        for (let i = 0; i < 1000; i++) cycle();
        await settle();
        rss.push(process.memoryUsage().rss);
      }
      console.log(JSON.stringify({ syncGrowth, rss, native: l.memoryStats().cpu.allocatedBytes }));
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 120000 });
  expect(r.stderr).toBe('');
  const { syncGrowth, rss, native } = JSON.parse(r.stdout) as { syncGrowth: number; rss: number[]; native: number };
  expect(native).toBe(0);
  const settled = Math.max(...rss.slice(2)) - rss[1];
  console.log(`synchronous 10k cycles: RSS +${(syncGrowth / 2 ** 20).toFixed(1)} MB; settled every 1k: ${rss.map((v) => (v / 2 ** 20).toFixed(1)).join(' ')} MB`);
  expect(syncGrowth).toBeLessThan(64 * 2 ** 20);
  // Flat: within 16 MB (V8's heap and the allocator's cache settling).
  expect(settled).toBeLessThan(16 * 2 ** 20);
}, 120000);
