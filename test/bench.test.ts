// bench.test.ts: the benchmark suites end to end in --quick mode (written to a temp dir:
// uniform JSON, a well-formed SVG chart holding the series), the chart module on hand-made
// data, and the bench entry's argument / device errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cuda, memoryStats, Llm2ClipError } from '../src';
import { runBench } from '../bench';
import { renderSvg, escapeXml, formatNumber } from '../bench/chart';

/** Checks that svg is one <svg> element with balanced tags and well-formed entities; returns its text content. */
function checkSvg(svg: string): string {
  expect(svg.trimStart().startsWith('<svg')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0, text = '';
  for (let m = re.exec(svg); m; m = re.exec(svg)) {
    text += svg.slice(last, m.index);
    last = re.lastIndex;
    const [, close, name, , self] = m;
    if (close) expect(stack.pop()).toBe(name);
    else if (!self) stack.push(name);
  }
  text += svg.slice(last);
  expect(stack).toEqual([]);
  // Nothing tag-like left over, and every & starts an entity.
  expect(text).not.toMatch(/[<>]/);
  expect(text.replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/&/);
  expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  return text;
}

describe('bench/chart', () => {
  test('line chart: log scales, OOM mark, escaped names, every series drawn', () => {
    const ns = [1024, 2048, 4096, 8192 + Math.floor(Math.random() * 3)];
    const svg = renderSvg([
      {
        kind: 'line', title: 'pairs <&> "s"', xLabel: 'N', yLabel: 'pairs/s', xScale: 'log2', yLog: true,
        series: [
          { name: 'fused & fast', points: ns.map((x, i) => ({ x, y: 1000 * (i + 1) + Math.random() })) },
          { name: 'materialised <N²>', points: ns.map((x, i) => (i < 2 ? { x, y: 500 / (i + 1) } : { x, y: null, mark: 'OOM' })) },
        ],
      },
      { kind: 'line', title: 'linear', xLabel: 'x', yLabel: 'y', series: [{ name: 'neg', points: [{ x: 0, y: -3 }, { x: 1, y: 7.5 }, { x: 2, y: NaN }] }] },
    ], { title: 'two panels' });
    const text = checkSvg(svg);
    expect(text).toContain(escapeXml('fused & fast'));
    expect(text).toContain('materialised &lt;N²&gt;');
    expect(text).toContain('pairs &lt;&amp;&gt; &quot;s&quot;');
    expect(text).toContain('OOM');
    expect(text).toContain('1k');
    // two OOM crosses, one label for the run of them, and a path per drawable series
    expect(svg.match(/>OOM</g)).toHaveLength(1);
    expect(svg.match(/<path d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+ M/g)).toHaveLength(2);
    expect(svg.match(/<path d="M[\d.]+,[\d.]+ L/g)!.length).toBeGreaterThanOrEqual(3);
    expect(svg.match(/<circle /g)).toHaveLength(4 + 2 + 2); // the NaN point is not drawn
  });

  test('grouped bar chart: one rect per finite value, long labels wrapped, empty chart still valid', () => {
    const vals = [3.5, 0.25, 12 + Math.random()];
    const svg = renderSvg({
      kind: 'bar', title: 'bars', xLabel: 'case', yLabel: 'ms',
      series: [
        { name: 'ours', points: [{ x: 'a very long category label that wraps', y: vals[0] }, { x: 'b', y: vals[1] }] },
        { name: 'theirs', points: [{ x: 'a very long category label that wraps', y: vals[2] }, { x: 'b', y: null, mark: 'n/a' }] },
      ],
    });
    const text = checkSvg(svg);
    expect(svg.match(/<rect x=/g)!.length).toBe(3 + 2); // 3 bars + 2 legend swatches
    expect(text).toContain('n/a');
    expect(svg).toContain('<tspan');
    checkSvg(renderSvg({ kind: 'bar', title: 'empty', xLabel: '', yLabel: '', series: [] }));
    checkSvg(renderSvg({ kind: 'line', title: 'empty', xLabel: '', yLabel: '', yLog: true, series: [{ name: 's', points: [] }] }));
  });

  test('formatNumber', () => {
    expect(formatNumber(1500)).toBe('1.5k');
    expect(formatNumber(2e6)).toBe('2M');
    expect(formatNumber(0.25)).toBe('0.25');
    expect(formatNumber(0)).toBe('0');
  });
});

describe('bench suites (--quick)', () => {
  let out: string;
  let logSpy: jest.SpyInstance;
  beforeAll(() => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-bench-test-'));
  });
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));
  beforeEach(() => {
    logSpy = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  });
  afterEach(() => logSpy.mockRestore());

  const read = (suite: string) => {
    const j = JSON.parse(fs.readFileSync(path.join(out, `${suite}.json`), 'utf8'));
    expect(j.suite).toBe(suite);
    expect(Number.isNaN(Date.parse(j.date))).toBe(false);
    expect(j.commit === null || /^[0-9a-f]{7,}/.test(j.commit)).toBe(true);
    expect(j.device).toBe('cpu');
    expect(typeof j.deviceName).toBe('string');
    expect(j.deviceName.length).toBeGreaterThan(0);
    expect(j.machine.cores).toBeGreaterThan(0);
    expect(j.quick).toBe(true);
    expect(typeof j.loadAverage).toBe('string');
    expect(Array.isArray(j.rows)).toBe(true);
    expect(j.rows.length).toBeGreaterThan(0);
    const svg = fs.readFileSync(path.join(out, `${suite}.svg`), 'utf8');
    return { j, svg, text: checkSvg(svg) };
  };
  const finitePos = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;

  test('gemm', async () => {
    expect(await runBench(['gemm', '--quick', '--no-baseline', '--out', out])).toBe(0);
    const { j, text } = read('gemm');
    for (const r of j.rows) expect(finitePos(r['GFLOP/s'])).toBe(true);
    expect(text).toContain('ours float32');
    expect(text).toContain('ours bfloat16');
  });

  test('attention', async () => {
    expect(await runBench(['attention', '--quick', '--no-baseline', '--out', out])).toBe(0);
    const { j, text } = read('attention');
    expect(j.rows.map((r: { pass: string }) => r.pass)).toEqual(['fwd', 'fwd+bwd', 'fwd', 'fwd+bwd']);
    for (const r of j.rows) expect(finitePos(r['GFLOP/s'])).toBe(true);
    expect(text).toContain('ours (cpu)');
  });

  test('lora', async () => {
    expect(await runBench(['lora', '--quick', '--no-baseline', '--out', out])).toBe(0);
    const { j, text } = read('lora');
    for (const r of j.rows) expect(finitePos(r['fused ms']) && finitePos(r['plain ms'])).toBe(true);
    expect(finitePos(j.bar.value)).toBe(true);
    expect(text).toContain('fused LoRA (ours)');
    expect(text).toContain('plain linear (ours)');
  });

  test('infonce: fused and materialised in one sweep; the baseline runs out of the budget first', async () => {
    // 20 MiB: the materialised loss fits at N=1024 (~13 MiB), not at 2048 (~50 MiB); the fused one fits both.
    expect(await runBench(['infonce', '--quick', '--no-baseline', '--mem-budget', String(20 / 1024), '--out', out])).toBe(0);
    const { j, text } = read('infonce');
    expect(j.rows.map((r: { N: number }) => r.N)).toEqual([1024, 2048]);
    const [r1, r2] = j.rows;
    for (const r of j.rows) {
      expect(finitePos(r['fused pairs/s'])).toBe(true);
      expect(finitePos(r['fused peak MiB'])).toBe(true);
    }
    expect(finitePos(r1['materialised pairs/s'])).toBe(true);
    expect(r1['materialised peak MiB']).toBeGreaterThan(3 * 4 * 1024 * 1024 / 2 ** 20); // holds N x N matrices
    expect(r1['fused peak MiB']).toBeLessThan(r1['materialised peak MiB']);
    expect(r1['loss rel diff']).toBeLessThan(1e-4);
    expect(r2['materialised pairs/s']).toBe('OOM');
    expect(r2['materialised peak MiB']).toMatch(/^OOM/);
    expect(j.gradientCheck).toBeLessThan(1e-4);
    expect(j.sweep.memoryBudgetBytes).toBe(Math.floor((20 / 1024) * 2 ** 30));
    expect(text).toContain('fused (streaming)');
    expect(text).toContain('materialised N x N');
    expect(text).toContain('OOM');
  });

  test('train-step (and no tensor left alive by it)', async () => {
    const live = memoryStats().liveTensors;
    expect(await runBench(['train-step', '--quick', '--out', out])).toBe(0);
    expect(memoryStats().liveTensors).toBe(live);
    const { j, text } = read('train-step');
    expect(j.rows.map((r: { stage: string }) => r.stage)).toEqual(['ccFinetune MNTP', 'ccFinetune SimCSE', 'trainClip']);
    for (const r of j.rows) {
      expect(finitePos(r.throughput)).toBe(true);
      expect(Number.isFinite(r.loss)).toBe(true);
    }
    expect(j.rows[0].unit).toBe('tokens/s');
    expect(j.rows[2].unit).toBe('images/s');
    expect(text).toContain('ccFinetune SimCSE');
    expect(text).toContain('trainClip');
  });
});

describe('bench arguments', () => {
  test('unknown or missing suite: usage, exit code 2', async () => {
    const err = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      expect(await runBench([])).toBe(2);
      expect(await runBench(['nope'])).toBe(2);
      expect(err.mock.calls.join('\n')).toContain('train-step');
    } finally {
      err.mockRestore();
    }
  });

  test('bad options throw INVALID_ARGUMENT naming the option', async () => {
    for (const args of [['gemm', '--bogus'], ['infonce', '--max-n', 'x'], ['infonce', '--mem-budget', '-1'], ['gemm', '--out'], ['gemm', '--device', 'tpu']]) {
      const e = await runBench(args).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(Llm2ClipError);
      expect((e as Llm2ClipError).code).toBe('INVALID_ARGUMENT');
      expect((e as Llm2ClipError).message).toContain(args[1] === '--device' ? '--device' : args[1]);
    }
  });

  (cuda.isAvailable() ? test.skip : test)('--device cuda without a GPU: DEVICE_UNAVAILABLE, nothing written', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-bench-nocuda-'));
    try {
      for (const suite of ['gemm', 'infonce', 'train-step']) {
        const e = await runBench([suite, '--device', 'cuda', '--quick', '--out', out]).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(Llm2ClipError);
        expect((e as Llm2ClipError).code).toBe('DEVICE_UNAVAILABLE');
        expect((e as Llm2ClipError).message).toMatch(/CUDA/);
      }
      expect(fs.readdirSync(out)).toEqual([]);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
