// bench/harness.ts: a small benchmark harness: timing by medians over repetitions,
// machine description, table printing and JSON results under bench/results/.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { getCpuIsa, getNumThreads, cuda } from '../src';

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

export function resultsDir(): string {
  const dir = process.env.LLM2CLIP_BENCH_OUT ?? path.join(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function writeResult(suite: string, data: object): string {
  const file = path.join(resultsDir(), `${suite}.json`);
  fs.writeFileSync(file, JSON.stringify({ suite, date: new Date().toISOString(), machine: machine(), ...data }, null, 2) + '\n');
  return file;
}
