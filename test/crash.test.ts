// crash.test.ts: SIGKILL during checkpoint writes. A child process (test/fixtures/
// checkpoint-writer.js, running src/train/checkpoint.ts) resumes from the latest
// checkpoint and writes 8 MiB checkpoints back to back; it is killed at a random moment,
// 20 times in a row, and after every kill loadLatestCheckpoint must return a complete
// checkpoint, the last one the child reported or the one it was finishing, with exactly
// the data of its step.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadLatestCheckpoint, saveCheckpoint } from '../src/train/checkpoint';
import { memoryStats, tensor, Llm2ClipError } from '../src';
import { expectCodeAsync } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-crash-'));
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});
const env = { ...process.env, L2C_TS_CACHE: path.join(tmp, 'ts-cache') };

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Run {
  child: ChildProcess;
  lines: string[];
  started: Promise<void>;
  /** Resolves at the first "writing" line after `after` lines of them. */
  writing: (after: number) => Promise<void>;
  closed: Promise<void>;
}

function startWriter(dir: string, rows: number): Run {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'checkpoint-writer.js'), dir, String(rows)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const lines: string[] = [];
  let buf = '', err = '';
  let onStart: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (onStart = resolve));
  let writes = 0;
  const waiters: [number, () => void][] = [];
  const writing = (after: number) => new Promise<void>((resolve) => waiters.push([after, resolve]));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      if (l.startsWith('start')) onStart();
      if (l.startsWith('writing')) {
        writes++;
        for (const [after, resolve] of waiters) if (writes > after) resolve();
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<void>((resolve, reject) =>
    child.on('close', (code, signal) => {
      onStart();
      for (const [, resolve] of waiters) resolve();
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`checkpoint writer exited with ${code}: ${err}`));
    }),
  );
  return { child, lines, started, writing, closed };
}

function checkData(ck: { state: Record<string, unknown>; tensors: Record<string, Record<string, import('../src').Tensor>> }, rows: number): number {
  const step = ck.state.step as number;
  expect(Number.isSafeInteger(step)).toBe(true);
  expect(ck.state.rows).toBe(rows);
  // (a loop: jest's toEqual on megabyte typed arrays takes seconds)
  const firstWrong = (t: import('../src').Tensor, salt: number, n: number): number => {
    const v = t.toArray();
    if (v.length !== n) return -2;
    for (let i = 0; i < n; i++) if (v[i] !== step * 1000 + ((i + salt) % 997)) return i;
    return -1;
  };
  expect(Object.keys(ck.tensors).sort()).toEqual(['optim', 'params']);
  expect(ck.tensors.params.a.shape).toEqual([rows, 1024]);
  expect(firstWrong(ck.tensors.params.a, 0, rows * 1024)).toBe(-1);
  expect(firstWrong(ck.tensors.params.b, 1, 1000)).toBe(-1);
  expect(firstWrong(ck.tensors.optim['a.exp_avg'], 2, rows * 1024)).toBe(-1);
  for (const g of Object.values(ck.tensors)) for (const t of Object.values(g)) t.dispose();
  return step;
}

test('SIGKILL at a random moment, 20 times in a row: LATEST always loads a complete checkpoint (the last saved or the one in flight)', async () => {
  const dir = path.join(tmp, 'kills');
  const rows = 1024;
  const seed = Date.now() % 100000;
  const rand = rng(seed);
  let lastSaved = 0;
  let midWrite = 0;
  const live0 = memoryStats().liveTensors;
  const t0 = Date.now();
  for (let round = 0; round < 20; round++) {
    const tr = Date.now();
    const run = startWriter(dir, rows);
    await run.started;
    const startMs = Date.now() - tr;
    // Even rounds: a random moment in the first 0.6 s (0 ms: right after it loaded the
    // latest checkpoint). Odd rounds: 0-30 ms after the child announced its k-th write
    // (k = 1..3); a save of 8 MiB with fsyncs takes longer, so these kill mid-write.
    if (round % 2 === 0) await new Promise((r) => setTimeout(r, Math.floor(rand() * 600)));
    else {
      await run.writing(Math.floor(rand() * 3));
      await new Promise((r) => setTimeout(r, Math.floor(rand() * 30)));
    }
    run.child.kill('SIGKILL');
    await run.closed;
    const pid = run.child.pid!;
    const inFlight = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(`-${pid}`)) : [];
    if (inFlight.length > 0) midWrite++;
    const saved = run.lines.filter((l) => l.startsWith('saved ')).map((l) => Number(l.slice(6)));
    const resumedAt = Number(run.lines.find((l) => l.startsWith('start '))!.slice(6));
    expect(resumedAt).toBeGreaterThanOrEqual(lastSaved);
    if (saved.length) lastSaved = Math.max(...saved);
    const ck = await loadLatestCheckpoint(dir, ['params', 'optim']);
    if (ck === null) {
      expect(lastSaved).toBe(0);
      continue;
    }
    const step = checkData(ck, rows);
    // the last reported save, or the next one if it completed before its "saved" line
    expect(step === lastSaved || step === lastSaved + 1).toBe(true);
    lastSaved = step;
    if (process.env.L2C_CRASH_VERBOSE) console.log(`round ${round}: start ${startMs} ms, step ${step}, in flight ${inFlight.join(' ')}, total ${Date.now() - tr} ms`);
  }
  const seconds = (Date.now() - t0) / 1000;
  console.log(`crash.test (seed ${seed}): 20 kills, ${midWrite} left a write in flight, checkpoints reached step ${lastSaved}, ${seconds.toFixed(1)} s`);
  expect(midWrite).toBeGreaterThanOrEqual(6);
  expect(lastSaved).toBeGreaterThanOrEqual(5); // the chain of resumes moved forward
  expect(memoryStats().liveTensors).toBe(live0);
  // The next save cleans what the killed writers left; at most `keep` checkpoints remain.
  const t = tensor([1, 2, 3], [3]);
  await saveCheckpoint(dir, 'step-9999999', { state: { step: 9999999 }, tensors: { params: { a: t } } });
  t.dispose();
  expect(fs.readdirSync(dir).filter((f) => f !== 'LATEST').length).toBe(2);
  expect(fs.readdirSync(dir).some((f) => f.startsWith('.'))).toBe(false);
}, 60000);

describe('loadLatestCheckpoint after a crash at each step of a save', () => {
  const one = async (dir: string, name: string, v: number) => {
    const t = tensor([v, v], [2]);
    await saveCheckpoint(dir, name, { state: { v }, tensors: { params: { a: t } } });
    t.dispose();
  };
  const load = async (dir: string) => {
    const ck = await loadLatestCheckpoint(dir, ['params']);
    if (!ck) return null;
    const a = Array.from(ck.tensors.params.a.toArray());
    ck.tensors.params.a.dispose();
    expect(a).toEqual([ck.state.v, ck.state.v]);
    return ck.state.v as number;
  };
  const deadPid = 2 ** 22 + 12345; // above the default pid_max: never alive

  test('killed before LATEST was written: the newest complete checkpoint is used', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'c1-'));
    await one(dir, 'step-1', 1);
    await one(dir, 'step-2', 2);
    fs.writeFileSync(path.join(dir, 'LATEST'), 'step-1\n'); // step-2 renamed in, LATEST not yet replaced
    expect(await load(dir)).toBe(1);
    fs.rmSync(path.join(dir, 'LATEST'));
    expect(await load(dir)).toBe(2);
    fs.mkdirSync(path.join(dir, `.step-3.tmp-${deadPid}`)); // a half-written one is ignored
    fs.writeFileSync(path.join(dir, `.step-3.tmp-${deadPid}`, 'params.safetensors'), 'garbage');
    expect(await load(dir)).toBe(2);
  });

  test('killed while replacing a same-named checkpoint: the one moved aside is used, then restored by the next save', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'c2-'));
    await one(dir, 'step-1', 1);
    await one(dir, 'step-4', 4);
    // crash between renaming step-4 aside and renaming its replacement in
    fs.renameSync(path.join(dir, 'step-4'), path.join(dir, `.step-4.old-${deadPid}`));
    expect(await load(dir)).toBe(4);
    await one(dir, 'step-5', 5);
    expect(fs.existsSync(path.join(dir, 'step-4'))).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(await load(dir)).toBe(5);
    // saving under an existing name replaces it
    await one(dir, 'step-5', 55);
    expect(await load(dir)).toBe(55);
  });

  test('a half-pruned old checkpoint is never mistaken for a complete one', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'c3-'));
    await one(dir, 'step-1', 1);
    fs.mkdirSync(path.join(dir, `.step-0.del-${deadPid}`));
    fs.rmSync(path.join(dir, 'LATEST'));
    expect(await load(dir)).toBe(1);
  });

  test('bad LATEST contents and a corrupt checkpoint are CORRUPT_FILE naming the file', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'c4-'));
    expect(await loadLatestCheckpoint(dir, ['params'])).toBeNull();
    expect(await loadLatestCheckpoint(path.join(dir, 'absent'), ['params'])).toBeNull();
    fs.writeFileSync(path.join(dir, 'LATEST'), '../../etc\n');
    await expectCodeAsync(loadLatestCheckpoint(dir, ['params']), 'CORRUPT_FILE', /LATEST/);
    fs.writeFileSync(path.join(dir, 'LATEST'), 'step-7\n');
    await expectCodeAsync(loadLatestCheckpoint(dir, ['params']), 'CORRUPT_FILE', /step-7/);
    await one(dir, 'step-1', 1);
    fs.writeFileSync(path.join(dir, 'step-1', 'state.json'), '{"v": 1,');
    await expectCodeAsync(loadLatestCheckpoint(dir, ['params']), 'CORRUPT_FILE', /state\.json/);
    fs.writeFileSync(path.join(dir, 'step-1', 'state.json'), '{"v": 1}');
    const f = path.join(dir, 'step-1', 'params.safetensors');
    fs.truncateSync(f, fs.statSync(f).size - 3);
    const live = memoryStats().liveTensors;
    await expectCodeAsync(loadLatestCheckpoint(dir, ['params']), 'CORRUPT_FILE', /params\.safetensors/);
    expect(memoryStats().liveTensors).toBe(live);
    const t = tensor([1], [1]);
    await expect(saveCheckpoint(dir, '../x', { state: {}, tensors: { params: { t } } })).rejects.toBeInstanceOf(Llm2ClipError);
    await expectCodeAsync(saveCheckpoint(dir, '.hidden', { state: {}, tensors: { params: { t } } }), 'INVALID_ARGUMENT', /name/);
    t.dispose();
  });
});
