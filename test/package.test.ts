// The package as users load it: require('./') from the root (compiled TypeScript +
// addon), inside worker_threads (the addon is context-aware), and the build reports.
import * as path from 'path';
import { Worker } from 'worker_threads';
import { cuda, getNumThreads, getCpuIsa } from '../src';

const root = path.join(__dirname, '..');

describe('package', () => {
  test("require('./') from the root loads the compiled API", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pkg = require(root);
    const t = pkg.ops.matmul(pkg.tensor([1, 2, 3, 4], [2, 2]), pkg.tensor([1, 0, 0, 1], [2, 2]));
    expect(Array.from(t.toArray())).toEqual([1, 2, 3, 4]);
    expect(typeof pkg.cuda.compiled()).toBe('boolean');
  });

  test('loads and computes inside two worker_threads at once', async () => {
    const code = `
      const { parentPort } = require('worker_threads');
      const l = require(${JSON.stringify(root)});
      const a = l.randn([300, 200], { seed: 3 }), b = l.randn([200, 100], { seed: 4 });
      let s = 0; for (const v of l.ops.matmul(a, b).toArray()) s += v;
      parentPort.postMessage(s);`;
    const run = () =>
      new Promise<number>((resolve, reject) => {
        const w = new Worker(code, { eval: true });
        w.on('message', resolve);
        w.on('error', reject);
      });
    const [x, y] = await Promise.all([run(), run()]);
    expect(Number.isFinite(x)).toBe(true);
    expect(x).toBe(y); // same seeds, same sums: deterministic across threads
  });

  test('CUDA is reported as compiled when nvcc was present, unavailable without a GPU', () => {
    const expected = process.env.LLM2CLIP_EXPECT_CUDA_COMPILED;
    if (expected !== undefined) expect(cuda.compiled()).toBe(expected === '1');
    if (!cuda.compiled()) expect(cuda.isAvailable()).toBe(false);
    expect(cuda.deviceCount() >= 0).toBe(true);
    expect(getNumThreads()).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'generic']).toContain(getCpuIsa());
  });
});
