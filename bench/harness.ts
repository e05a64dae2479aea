// bench/harness.ts: a small benchmark harness: option parsing, device checks, timing by
// medians over repetitions, machine description, table printing, and the uniform results
// every suite writes (<out>/<suite>.json and .svg, bench/results by default).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { getCpuIsa, getNumThreads, cuda } from '../src';
import { fail } from '../src/errors';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seconds per call of fn: `warmup` untimed calls, then the median of `reps` timed ones. */
export function timeIt(fn: () => void, reps: number, warmup = 1): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return ts;
}

export interface Machine {
  cpu: string;
  cores: number;
  threads: number;
  isa: string;
  memoryGiB: number;
  node: string;
  os: string;
  cuda: string;
}

export function machine(): Machine {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    threads: getNumThreads(),
    isa: getCpuIsa(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    cuda: cuda.isAvailable() ? cuda.deviceName(0) : cuda.compiled() ? 'compiled, no device' : 'not compiled',
  };
}

export function printTable(rows: Record<string, string | number>[]): void {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]);
  const cell = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? '').length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(width[i])).join('  ');
  console.log(line(cols));
  console.log(width.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(cols.map((c) => cell(r[c] ?? ''))));
}

// ---- options, devices, uniform results (every suite)

/** Options common to every suite (parsed by {@link parseBenchArgs}). */
export interface BenchOptions {
  /** 'cpu' or 'cuda' / 'cuda:N' (checked: a clear DEVICE_UNAVAILABLE error without a GPU). */
  device: string;
  /** Small sizes (tests, smoke runs). */
  quick: boolean;
  /** Where <suite>.json and <suite>.svg go (default bench/results, or LLM2CLIP_BENCH_OUT). */
  out: string;
  /** Skip the external baselines (numpy/OpenBLAS, PyTorch) even where they are installed. */
  noBaseline: boolean;
  /** infonce: largest batch size of the sweep. */
  maxN: number | null;
  /** infonce on the CPU: memory budget in bytes (default a quarter of the machine's memory). */
  memBudget: number | null;
}

/** Parses `[--device D] [--quick] [--out DIR] [--no-baseline] [--max-n N] [--mem-budget GiB]`; INVALID_ARGUMENT on anything else. */
export function parseBenchArgs(suite: string, args: string[]): BenchOptions {
  const o: BenchOptions = { device: 'cpu', quick: false, out: defaultResultsDir(), noBaseline: false, maxN: null, memBudget: null };
  const value = (i: number, name: string): string => {
    const v = args[i + 1];
    if (v === undefined || v.startsWith('--')) fail('INVALID_ARGUMENT', `bench ${suite}: ${name} needs a value`);
    return v;
  };
  const posNum = (v: string, name: string, int: boolean): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || (int && !Number.isSafeInteger(n))) fail('INVALID_ARGUMENT', `bench ${suite}: ${name} must be a positive ${int ? 'integer' : 'number'} (got ${JSON.stringify(v)})`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--no-baseline') o.noBaseline = true;
    else if (a === '--device') o.device = value(i++, a);
    else if (a === '--out') o.out = path.resolve(value(i++, a));
    else if (a === '--max-n') o.maxN = posNum(value(i++, a), a, true);
    else if (a === '--mem-budget') o.memBudget = Math.floor(posNum(value(i++, a), a, false) * 2 ** 30);
    else fail('INVALID_ARGUMENT', `bench ${suite}: unknown option ${JSON.stringify(a)} (options: --device cpu|cuda[:N], --quick, --out DIR, --no-baseline, --max-n N, --mem-budget GiB)`);
  }
  checkDevice(o.device, `bench ${suite}`);
  return o;
}

/** Throws INVALID_ARGUMENT for a malformed device and DEVICE_UNAVAILABLE for CUDA without a usable GPU. */
export function checkDevice(device: string, what: string): void {
  const m = /^(cpu|cuda)(?::(\d+))?$/.exec(device);
  if (!m) fail('INVALID_ARGUMENT', `${what}: --device must be cpu, cuda or cuda:N (got ${JSON.stringify(device)})`);
  if (m[1] === 'cuda') {
    if (!cuda.compiled()) fail('DEVICE_UNAVAILABLE', `${what}: --device ${device}: this build of llm2clip has no CUDA backend (rebuild on a machine with nvcc; see README, GPU notes)`);
    if (!cuda.isAvailable()) fail('DEVICE_UNAVAILABLE', `${what}: --device ${device}: no CUDA device found (driver missing or no GPU visible)`);
    const idx = Number(m[2] ?? 0);
    if (idx >= cuda.deviceCount()) fail('DEVICE_UNAVAILABLE', `${what}: --device ${device}: only ${cuda.deviceCount()} CUDA device(s)`);
  }
}

/** Waits for queued GPU work (no-op on the CPU): call before reading a clock. */
export function sync(device: string): void {
  if (device.startsWith('cuda')) cuda.synchronize(device);
}

/** A device in words: the CPU model or the GPU's name. */
export function deviceName(device: string): string {
  if (device.startsWith('cuda')) return cuda.deviceName(Number(device.split(':')[1] ?? 0));
  return `${os.cpus()[0]?.model ?? 'CPU'} (${os.cpus().length} cores, ${getNumThreads()} threads, ${getCpuIsa()})`;
}

/** The file stem of a suite's results: `<suite>` on the CPU, `<suite>-cuda` on a GPU (so GPU runs don't overwrite CPU ones). */
export function resultStem(suite: string, device: string): string {
  return device === 'cpu' ? suite : `${suite}-${device.replace(':', '')}`;
}

function defaultResultsDir(): string {
  return process.env.LLM2CLIP_BENCH_OUT ?? path.join(repoRoot(), 'bench', 'results');
}

/** The repository root (this file is bench/harness.ts, or dist/bench/harness.js once built). */
function repoRoot(): string {
  const up = path.join(__dirname, '..');
  return path.basename(up) === 'dist' ? path.join(up, '..') : up;
}

/** The git commit of the working tree (short hash, '+dirty' when it has changes), or null outside git. */
export function gitCommit(): string | null {
  const r = spawnSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: repoRoot(), encoding: 'utf8' });
  if (r.status !== 0) return null;
  const d = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot(), encoding: 'utf8' });
  return r.stdout.trim() + (d.status === 0 && d.stdout.trim() ? '+dirty' : '');
}

/** The 1-minute load average at the start and the end of a suite (shared machines). */
export class LoadWatch {
  readonly start = os.loadavg()[0];
  /** "1.2 -> 1.9" */
  text(): string {
    return `${this.start.toFixed(2)} -> ${os.loadavg()[0].toFixed(2)}`;
  }
}

/** What every suite's JSON holds, besides its own fields. */
export interface ResultHeader {
  suite: string;
  date: string;
  commit: string | null;
  device: string;
  deviceName: string;
  quick: boolean;
  loadAverage: string;
  machine: Machine;
  rows: Record<string, string | number | null>[];
}

/**
 * Writes `<out>/<stem>.json` (the uniform header: suite, date, commit, device and its name,
 * machine, load average, quick, rows; then the suite's own fields) and `<out>/<stem>.svg`.
 * Returns both paths.
 */
export function writeResults(
  suite: string, o: BenchOptions, load: LoadWatch, rows: Record<string, string | number | null>[], extra: object, svg: string,
): { json: string; svg: string } {
  fs.mkdirSync(o.out, { recursive: true });
  const stem = resultStem(suite, o.device);
  const header: ResultHeader = {
    suite, date: new Date().toISOString(), commit: gitCommit(), device: o.device, deviceName: deviceName(o.device),
    quick: o.quick, loadAverage: load.text(), machine: machine(), rows,
  };
  const json = path.join(o.out, `${stem}.json`);
  const { rows: _r, ...head } = header;
  fs.writeFileSync(json, JSON.stringify({ ...head, ...extra, rows }, null, 2) + '\n');
  const svgFile = path.join(o.out, `${stem}.svg`);
  fs.writeFileSync(svgFile, svg);
  return { json, svg: svgFile };
}

/** Prints the table and where the results went. */
export function report(rows: Record<string, string | number | null>[], files: { json: string; svg: string }, load: LoadWatch): void {
  printTable(rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v ?? '']))));
  console.log(`\nload average (1 min): ${load.text()}`);
  console.log(`wrote ${files.json}\nwrote ${files.svg}`);
}

let childSrc: string | null = null;

/**
 * How a child node process loads this package: the entry file (dist/src/index.js when the
 * suites run compiled; under ts-jest a once-per-process transpiled copy of src/ in a temp
 * directory, removed at exit) and the environment it needs (the addon's path, node_modules).
 */
export function childPackage(): { entry: string; env: NodeJS.ProcessEnv } {
  const root = repoRoot();
  const env = { ...process.env, LLM2CLIP_ADDON: process.env.LLM2CLIP_ADDON ?? path.join(root, 'build', 'Release', 'llm2clip.node'), NODE_PATH: path.join(root, 'node_modules') };
  if (!__filename.endsWith('.ts')) return { entry: path.join(__dirname, '..', 'src', 'index.js'), env };
  if (!childSrc) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ts = require('typescript') as typeof import('typescript');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-bench-src-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    const walk = (from: string, to: string): void => {
      fs.mkdirSync(to, { recursive: true });
      for (const e of fs.readdirSync(from, { withFileTypes: true })) {
        const f = path.join(from, e.name);
        if (e.isDirectory()) walk(f, path.join(to, e.name));
        else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
          const js = ts.transpileModule(fs.readFileSync(f, 'utf8'), {
            fileName: f, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
          }).outputText;
          fs.writeFileSync(path.join(to, e.name.replace(/\.ts$/, '.js')), js);
        }
      }
    };
    walk(path.join(root, 'src'), path.join(dir, 'src'));
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'llm2clip-bench-child', private: true }));
    childSrc = path.join(dir, 'src', 'index.js');
  }
  return { entry: childSrc, env };
}
