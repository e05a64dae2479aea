// enospc.test.ts: a disk that fills during a checkpoint write. Simulated with the write
// fault hook (every platform), and for real on a small tmpfs where the test runs as root
// and may mount one. Either way: IO_ERROR naming the file and the cause, no partial
// file or directory left behind, LATEST still names the previous checkpoint, which loads
// intact, and the next save (after space is freed) works.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { tensor, Tensor, saveSafetensors, loadSafetensors, memoryStats, ccFinetune, CaptionDataset } from '../src';
import { saveCheckpoint, loadLatestCheckpoint } from '../src/train/checkpoint';
import { setWriteFaultHook } from '../src/io/fault';
import { expectCodeAsync } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-enospc-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => setWriteFaultHook(null));

const enospc = (file: string) => Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: 'ENOSPC', path: file });

function data(v: number, n = 1000): { state: Record<string, unknown>; tensors: Record<string, Record<string, Tensor>> } {
  return { state: { v }, tensors: { params: { w: tensor(new Float32Array(n).fill(v), [n]) }, optim: { m: tensor(new Float32Array(n).fill(-v), [n]) } } };
}
function free(d: { tensors: Record<string, Record<string, Tensor>> }): void {
  for (const g of Object.values(d.tensors)) for (const t of Object.values(g)) t.dispose();
}
async function expectIntact(dir: string, v: number, n = 1000): Promise<void> {
  const ck = await loadLatestCheckpoint(dir, ['params', 'optim']);
  expect(ck).not.toBeNull();
  expect(ck!.state.v).toBe(v);
  const w = ck!.tensors.params.w.toArray(), m = ck!.tensors.optim.m.toArray();
  expect(w.length).toBe(n);
  expect(w.every((x) => x === v) && m.every((x) => x === -v)).toBe(true);
  free(ck!);
}
const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('.') || f.includes('.tmp-'));

describe('simulated ENOSPC (write fault hook)', () => {
  for (const [where, match] of [
    ['params.safetensors, first write', (f: string, n: number, k: number) => f.endsWith('params.safetensors') && k === 0],
    ['optim.safetensors, in the data', (f: string, n: number) => f.endsWith('optim.safetensors') && n > 100],
    ['state.json', (f: string) => f.endsWith('state.json')],
    ['LATEST', (f: string) => path.basename(f).startsWith('LATEST')],
  ] as const) {
    test(`full disk while writing ${where}: IO_ERROR naming the file, nothing partial left, the previous checkpoint stays LATEST and valid`, async () => {
      const dir = fs.mkdtempSync(path.join(tmp, 'hook-'));
      const d1 = data(1);
      await saveCheckpoint(dir, 'step-1', d1);
      free(d1);
      const d2 = data(2);
      let k = 0;
      setWriteFaultHook((f, n) => {
        if (match(f, n, k++)) throw enospc(f);
      });
      const live = memoryStats().liveTensors;
      const file = where.split(/[ ,]/)[0];
      await expectCodeAsync(saveCheckpoint(dir, 'step-2', d2), 'IO_ERROR', /ENOSPC|no space left/, new RegExp(file.replace('.', '\\.')), /step-2/);
      expect(memoryStats().liveTensors).toBe(live);
      setWriteFaultHook(null);
      expect(fs.readFileSync(path.join(dir, 'LATEST'), 'utf8').trim()).toBe('step-1');
      expect(leftovers(dir)).toEqual([]);
      expect(fs.readdirSync(dir).sort()).toEqual(['LATEST', 'step-1']);
      await expectIntact(dir, 1);
      // space freed: the next save goes through
      await saveCheckpoint(dir, 'step-2', d2);
      free(d2);
      await expectIntact(dir, 2);
    });
  }

  test('saveSafetensors on a full disk: IO_ERROR naming the file, no temp file, an existing file untouched', async () => {
    const f = path.join(tmp, 'w.safetensors');
    const t = tensor([1, 2, 3], [3]);
    await saveSafetensors(f, { t });
    const before = fs.readFileSync(f);
    setWriteFaultHook((file, n) => {
      if (n > 8) throw enospc(file);
    });
    await expectCodeAsync(saveSafetensors(f, { t: tensor([4, 5, 6], [3]) }), 'IO_ERROR', /w\.safetensors/, /no space left/);
    setWriteFaultHook(null);
    expect(fs.readFileSync(f)).toEqual(before);
    expect(fs.readdirSync(tmp).filter((x) => x.startsWith('w.safetensors.tmp'))).toEqual([]);
    const back = await loadSafetensors(f);
    expect(Array.from(back.t.toArray())).toEqual([1, 2, 3]);
    back.t.dispose();
    t.dispose();
  });

  test('a training run whose checkpoint write hits a full disk stops with IO_ERROR; resume: true continues from the previous checkpoint', async () => {
    const images = Array.from({ length: 24 }, (_, i) => ({ id: `i${i}`, captions: [`a ${['red', 'blue', 'green'][i % 3]} thing ${i % 4}`, `the ${['red', 'blue', 'green'][i % 3]} one ${i % 4}`] }));
    const ds: CaptionDataset = { format: 'captions', source: 'generated', images };
    const out = path.join(tmp, 'train');
    const o = { data: ds, model: 'tiny' as const, presetSizes: { hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 300 }, mntpSteps: 0, steps: 6, batchSize: 8, chunkSize: 8, outputDir: out, progress: false, checkpointEvery: 2, seed: 4, maxLength: 16 };
    const full = await ccFinetune({ ...o, outputDir: path.join(tmp, 'train-full') });
    setWriteFaultHook((f) => {
      if (f.includes('simcse-0000004') && f.endsWith('optim.safetensors')) throw enospc(f);
    });
    await expectCodeAsync(ccFinetune(o), 'IO_ERROR', /simcse-0000004/, /optim\.safetensors/, /no space left/);
    setWriteFaultHook(null);
    const ckDir = path.join(out, 'checkpoints');
    expect(fs.readFileSync(path.join(ckDir, 'LATEST'), 'utf8').trim()).toBe('simcse-0000002');
    expect(leftovers(ckDir)).toEqual([]);
    const r = await ccFinetune({ ...o, resume: true });
    expect(r.losses).toEqual(full.losses);
  }, 60000);
});

/** Mounts a tmpfs of `size` at a new folder (root only); null where that is not possible. */
function mountTmpfs(size: string): string | null {
  if (process.platform !== 'linux' || typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const mnt = fs.mkdtempSync(path.join(tmp, 'tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'ignore' });
    return mnt;
  } catch {
    return null;
  }
}

test('a real full disk (a 3 MiB tmpfs, where root may mount one): the same guarantees', async () => {
  const mnt = mountTmpfs('3m');
  if (!mnt) {
    console.log('enospc.test: not root or mount refused; the real-tmpfs case is skipped (the hook cases above cover the paths)');
    return;
  }
  try {
    const dir = path.join(mnt, 'ck');
    const n = 300 * 1024; // 1.2 MiB per tensor group file, 2.4 MiB per checkpoint
    const d1 = data(1, n);
    await saveCheckpoint(dir, 'step-1', d1);
    free(d1);
    const d2 = data(2, n);
    const e = await expectCodeAsync(saveCheckpoint(dir, 'step-2', d2), 'IO_ERROR', /ENOSPC|no space left/i, /step-2/);
    expect(e.message).toMatch(/(params|optim)\.safetensors|state\.json/);
    expect(fs.readFileSync(path.join(dir, 'LATEST'), 'utf8').trim()).toBe('step-1');
    expect(leftovers(dir)).toEqual([]);
    await expectIntact(dir, 1, n);
    free(d2);
    // with room (smaller tensors), the next checkpoint is written and replaces the old one
    const d3 = data(3, 1000);
    await saveCheckpoint(dir, 'step-3', d3, 1);
    free(d3);
    await expectIntact(dir, 3, 1000);
    expect(fs.readdirSync(dir).sort()).toEqual(['LATEST', 'step-3']);
  } finally {
    execFileSync('umount', [mnt], { stdio: 'ignore' });
  }
});
