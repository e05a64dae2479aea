// demo.test.ts: the main job. The world generator (deterministic by seed, captions that
// match the rendered pixels, long captions that tell apart scenes whose short captions
// coincide), runDemo's option errors, the --quick demo end to end (report.html and
// metrics.json with finite figures and the right chance levels), the demo on a --data
// folder without splits or pairs, and the CLI.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Rng, cuda, memoryStats } from '../src';
import { makeScene, renderScene, worldScenes, writeWorld, WORLD_COLOURS, WORLD_SHAPES, WORLD_BACKGROUND, WorldScene, describeObjects } from '../src/data/world';
import { runDemo, DemoMetrics } from '../src/demo';
import { renderReport, escapeHtml } from '../src/demo-report';
import { expectCode, expectCodeAsync } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-demo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const seed0 = (Date.now() % 100000) + 1; // fresh scenes every run

const PLACES = [
  ['at the top left', 'at the top', 'at the top right'],
  ['on the left', 'in the centre', 'on the right'],
  ['at the bottom left', 'at the bottom', 'at the bottom right'],
];

/** The objects a long caption names: [size, colour, shape, row, col]. */
function parseLong(long: string): [string, string, string, number, number][] {
  const alts = PLACES.flat().sort((a, b) => b.length - a.length); // longest first: 'at the top left' before 'at the top'
  const re = new RegExp(`a (small|large) (\\w+) (\\w+) (${alts.join('|')})(?=[ ,.])`, 'g');
  return [...long.matchAll(re)].map((m) => {
    const r = PLACES.findIndex((row) => row.includes(m[4]));
    return [m[1], m[2], m[3], r, PLACES[r].indexOf(m[4])];
  });
}

const rgbOf = (name: string): readonly number[] => WORLD_COLOURS.find((c) => c.name === name)!.rgb;

describe('world', () => {
  test('the same seed gives the same scenes, pixels and files; another seed others', async () => {
    const a = worldScenes(seed0, 30, 6), b = worldScenes(seed0, 30, 6), c = worldScenes(seed0 + 1, 30, 6);
    expect(b).toEqual(a);
    expect(c.train.map((s) => s.long)).not.toEqual(a.train.map((s) => s.long));
    // A smaller world is a prefix of a larger one.
    expect(worldScenes(seed0, 10, 2).train).toEqual(a.train.slice(0, 10));
    expect(Buffer.from(renderScene(a.train[3], 40)).equals(Buffer.from(renderScene(b.train[3], 40)))).toBe(true);
    const d1 = path.join(tmp, 'w1'), d2 = path.join(tmp, 'w2');
    await writeWorld(d1, { train: 9, test: 3, perClass: 0, imageSize: 24, seed: seed0 });
    await writeWorld(d2, { train: 9, test: 3, perClass: 0, imageSize: 24, seed: seed0 });
    for (const f of ['captions.jsonl', 'pairs.jsonl', 'corpus.txt', 'images/00000.png', 'images/00011.png'])
      expect(fs.readFileSync(path.join(d1, f)).equals(fs.readFileSync(path.join(d2, f)))).toBe(true);
  });

  test('captions match the rendered scene', () => {
    const size = 64;
    for (let i = 0; i < 60; i++) {
      const s = makeScene(new Rng(seed0, 99, i));
      const px = renderScene(s, size);
      const at = (x: number, y: number): number[] => Array.from(px.subarray((y * size + x) * 3, (y * size + x) * 3 + 3));
      // The long caption names exactly the scene's objects, in order; the short one the first.
      const named = parseLong(s.long);
      expect(named).toEqual(s.objects.map((o) => [o.size, o.colour, o.shape, o.row, o.col]));
      expect(s.short).toBe(`a ${s.objects[0].colour} ${s.objects[0].shape}`);
      // Each object's centre pixel has its colour; the centres of empty cells are background.
      for (const o of s.objects) expect(at(Math.floor(o.x * size), Math.floor(o.y * size))).toEqual([...rgbOf(o.colour)]);
      for (let r = 0; r < 3; r++)
        for (let c = 0; c < 3; c++)
          if (!s.objects.some((o) => o.row === r && o.col === c)) expect(at(Math.floor(((c + 0.5) / 3) * size), Math.floor(((r + 0.5) / 3) * size))).toEqual([...WORLD_BACKGROUND]);
      // The paraphrase names the same colour+shape pairs in other words.
      const names = (t: string) => [...t.matchAll(new RegExp(`(${WORLD_COLOURS.map((k) => k.name).join('|')}) (${WORLD_SHAPES.join('|')})`, 'g'))].map((m) => m[0]);
      expect(new Set(names(s.paraphrase))).toEqual(new Set(names(s.long)));
      expect(s.paraphrase).not.toBe(s.long);
    }
  });

  test('a relation names the right direction', () => {
    const base = { size: 'large' as const, radius: 0.14, x: 0, y: 0 };
    const a = { ...base, shape: 'circle' as const, colour: 'red', row: 0, col: 0 };
    const b = { ...base, shape: 'square' as const, colour: 'blue', row: 0, col: 2 };
    const d = describeObjects([a, b], new Rng(1));
    expect(d.long).toMatch(/the red circle is to the left of the blue square\./);
    expect(d.paraphrase).toMatch(/the blue square is to the right of the red circle\./);
    expect(describeObjects([a, { ...b, row: 2, col: 0 }], new Rng(1)).long).toMatch(/the red circle is above the blue square\./);
  });

  test('long captions differ where short ones coincide', () => {
    const scenes: WorldScene[] = worldScenes(seed0, 400, 0).train;
    const byShort = new Map<string, string[]>();
    for (const s of scenes) byShort.set(s.short, [...(byShort.get(s.short) ?? []), s.long]);
    const shared = [...byShort.values()].filter((g) => g.length >= 2);
    expect(shared.length).toBeGreaterThan(20);
    let pairs = 0, distinct = 0;
    for (const g of shared)
      for (let i = 0; i < g.length; i++)
        for (let j = i + 1; j < g.length; j++) {
          pairs++;
          if (g[i] !== g[j]) distinct++;
        }
    expect(distinct / pairs).toBeGreaterThan(0.97);
    expect(new Set(scenes.map((s) => s.long)).size).toBeGreaterThan(3 * byShort.size);
  });

  test('bad options are typed errors', async () => {
    expectCode(() => makeScene(new Rng(1), { maxObjects: 4 }), 'INVALID_ARGUMENT', /maxObjects/);
    expectCode(() => makeScene(new Rng(1), { shape: 'hexagon' as never }), 'INVALID_ARGUMENT', /hexagon/);
    expectCode(() => renderScene(makeScene(new Rng(1)), 3), 'INVALID_ARGUMENT', /size/);
    expectCode(() => worldScenes(-1, 2, 2), 'INVALID_ARGUMENT', /seed/);
    await expectCodeAsync(writeWorld(path.join(tmp, 'bad'), { train: 0 }), 'INVALID_ARGUMENT', /options\.train/);
    await expectCodeAsync(writeWorld(path.join(tmp, 'bad'), { imageSize: 2.5 }), 'INVALID_ARGUMENT', /imageSize/);
    await expectCodeAsync(writeWorld('', {}), 'INVALID_ARGUMENT', /dir/);
  });
});

describe('runDemo options', () => {
  test('bad options are typed errors and write nothing', async () => {
    const out = path.join(tmp, 'never');
    await expectCodeAsync(runDemo({ out, device: 'tpu' }), 'INVALID_ARGUMENT', /device/);
    await expectCodeAsync(runDemo({ out, seed: -1 }), 'INVALID_ARGUMENT', /seed/);
    await expectCodeAsync(runDemo({ out, seed: 1.5 }), 'INVALID_ARGUMENT', /seed/);
    await expectCodeAsync(runDemo({ out, quick: 'yes' as never }), 'INVALID_ARGUMENT', /quick/);
    await expectCodeAsync(runDemo({ out, steps: 3 } as never), 'INVALID_ARGUMENT', /unknown option "steps"/);
    await expectCodeAsync(runDemo({ out: '' }), 'INVALID_ARGUMENT', /out/);
    await expectCodeAsync(runDemo(null as never), 'INVALID_ARGUMENT', /options/);
    await expectCodeAsync(runDemo({ out, data: path.join(tmp, 'no-such-dir') }), 'IO_ERROR', /no-such-dir/);
    if (!cuda.isAvailable()) await expectCodeAsync(runDemo({ out, device: 'cuda' }), 'DEVICE_UNAVAILABLE', /--device cpu/);
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    await expectCodeAsync(runDemo({ out: file }), 'INVALID_ARGUMENT', /not a folder/);
    expect(fs.existsSync(out)).toBe(false);
    // Data folders without images/ or a caption file; an out/data the demo did not write.
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    await expectCodeAsync(runDemo({ out, data: empty, progress: false }), 'IO_ERROR', /images\//);
    fs.mkdirSync(path.join(empty, 'images'));
    await expectCodeAsync(runDemo({ out, data: empty, progress: false }), 'IO_ERROR', /captions\.jsonl/);
    const foreign = path.join(tmp, 'foreign');
    fs.mkdirSync(path.join(foreign, 'data'), { recursive: true });
    fs.writeFileSync(path.join(foreign, 'data', 'mine.txt'), 'keep me');
    await expectCodeAsync(runDemo({ out: foreign, progress: false }), 'INVALID_ARGUMENT', /world\.json/);
    expect(fs.readFileSync(path.join(foreign, 'data', 'mine.txt'), 'utf8')).toBe('keep me');
  });
});

function expectFiniteFraction(v: unknown): void {
  expect(typeof v).toBe('number');
  expect(Number.isFinite(v)).toBe(true);
  expect(v as number).toBeGreaterThanOrEqual(0);
  expect(v as number).toBeLessThanOrEqual(1);
}

function checkRetrieval(r: DemoMetrics['retrieval'], images: number, captions: number): void {
  expect(r.images).toBe(images);
  expect(r.captions).toBe(captions);
  for (const dir of ['i2t', 't2i'] as const)
    for (const k of ['r1', 'r5', 'r10'] as const) {
      expectFiniteFraction(r[dir][k]);
      expectFiniteFraction(r.chance[dir][k]);
    }
  // t2i chance is K / I exactly; i2t chance with one caption per image too.
  expect(r.chance.t2i.r1).toBeCloseTo(1 / images, 12);
  expect(r.chance.t2i.r5).toBeCloseTo(5 / images, 12);
  expect(r.chance.t2i.r10).toBeCloseTo(10 / images, 12);
  if (captions === images) expect(r.chance.i2t.r1).toBeCloseTo(1 / images, 12);
  // No model beats the ceiling that repeated captions set.
  expectFiniteFraction(r.ceilingR1.i2t);
  expectFiniteFraction(r.ceilingR1.t2i);
  expect(r.i2t.r1).toBeLessThanOrEqual(r.ceilingR1.i2t + 1e-12);
  expect(r.t2i.r1).toBeLessThanOrEqual(r.ceilingR1.t2i + 1e-12);
  expect(r.i2t.r1).toBeLessThanOrEqual(r.i2t.r5);
  expect(r.i2t.r5).toBeLessThanOrEqual(r.i2t.r10);
}

describe('the --quick demo end to end', () => {
  const out = path.join(tmp, 'quick');
  let metrics: DemoMetrics;

  test('writes report.html, metrics.json and the stages\' outputs', async () => {
    const live = memoryStats().liveTensors;
    const r = await runDemo({ out, quick: true, progress: false, device: 'cpu', seed: seed0 % 1000 });
    expect(memoryStats().liveTensors).toBe(live); // every model and tensor freed
    expect(r.outDir).toBe(out);
    for (const f of ['report.html', 'metrics.json', 'tokenizer.json', 'data/world.json', 'cc/base/config.json', 'cc/adapter/adapter_config.json', 'clip/vision/config.json', 'clip/text_adapter', 'clip/clip_config.json'])
      expect(fs.existsSync(path.join(out, f))).toBe(true);
    metrics = JSON.parse(fs.readFileSync(r.metricsPath, 'utf8'));
    expect(metrics).toEqual(JSON.parse(JSON.stringify(r.metrics)));
  }, 240000);

  test('metrics.json holds every figure, finite, with the right chance levels', () => {
    const m = metrics;
    expect(m.device).toBe('cpu');
    expect(m.quick).toBe(true);
    expect(m.seconds).toBeGreaterThan(0);
    expect(Number.isFinite(m.seconds)).toBe(true);
    const { trainImages, testImages, classImages, classes } = m.data;
    expect([trainImages, testImages, classImages, classes]).toEqual([192, 48, 48, 48]);
    // CRA: each test image's long caption retrieves among the test images' paraphrases.
    expect(m.cra).not.toBeNull();
    expectFiniteFraction(m.cra!.before);
    expectFiniteFraction(m.cra!.after);
    expect(m.cra!.images).toBe(testImages);
    expect(m.cra!.chance).toBeCloseTo(1 / testImages, 12);
    checkRetrieval(m.retrievalShort!, testImages, testImages);
    checkRetrieval(m.retrievalLong!, testImages, testImages);
    checkRetrieval(m.retrieval, testImages, 2 * testImages);
    // Short captions repeat across test images (a ceiling well below 1); long ones hardly.
    expect(m.retrievalShort!.ceilingR1.t2i).toBeLessThan(0.9);
    expect(m.retrievalLong!.ceilingR1.t2i).toBeGreaterThan(0.95);
    expectFiniteFraction(m.zeroShot!.accuracy);
    expect(m.zeroShot!.chance).toBeCloseTo(1 / 48, 12);
    expect(m.zeroShot!.prompt).toBe('a {class}');
    // Loss curves of both stages, finite.
    for (const l of [m.cc.mntpLosses, m.cc.losses, m.clip.losses]) {
      expect(l.length).toBeGreaterThan(0);
      expect(l.every((v) => Number.isFinite(v))).toBe(true);
    }
    expect(m.cc.losses.length).toBe(m.cc.steps);
    expect(m.stages.map((s) => s.name)).toEqual(['data', 'tokenizer', 'cc-finetune', 'train-clip', 'evaluate', 'report']);
    // Even the smoke run's stage 1 helps: contrastive fine-tuning beats MNTP alone.
    expect(m.cra!.after).toBeGreaterThan(m.cra!.before);
  });

  test('report.html is self-contained, with inline SVG charts, and escapes text', () => {
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThanOrEqual(5);
    expect(html).not.toMatch(/<script|<link|<img|\ssrc=|\shref=|url\(/i);
    expect(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')).not.toMatch(/https?:/);
    expect(html).toContain('CRA');
    expect(html).not.toMatch(/NaN|undefined/);
    const evil = renderReport({ ...metrics, device: '<script>alert(1)</script>', zeroShot: { ...metrics.zeroShot!, prompt: 'a "{class}" & <b>' } });
    expect(evil).not.toContain('<script>');
    expect(evil).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(evil).toContain('a &quot;{class}&quot; &amp; &lt;b&gt;');
    expect(escapeHtml(`<a href='x'>&`)).toBe('&lt;a href=&#39;x&#39;&gt;&amp;');
  });

  test('--data: a folder with a TSV caption file, no splits, pairs or classes', async () => {
    // Images of the quick world with two TSV captions each (short, long): split 80/20 by file.
    const src = path.join(out, 'data');
    const dir = path.join(tmp, 'real');
    fs.mkdirSync(path.join(dir, 'images'), { recursive: true });
    const recs = fs.readFileSync(path.join(src, 'captions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).slice(0, 60);
    const lines: string[] = [];
    for (const r of recs) {
      fs.copyFileSync(path.join(src, 'images', r.image), path.join(dir, 'images', r.image));
      lines.push(`${r.image}#0\t${r.caption}`, `${r.image}#1\t${r.long_caption}`);
    }
    fs.writeFileSync(path.join(dir, 'captions.tsv'), lines.join('\n') + '\n');
    const r = await runDemo({ out: path.join(tmp, 'real-out'), data: dir, quick: true, progress: false, device: 'cpu' });
    const m = r.metrics;
    expect(m.data.source).toBe(dir);
    expect(m.data.trainImages + m.data.testImages).toBe(60);
    expect(m.data.ccSource).toMatch(/captions\.tsv/);
    expect(m.retrievalLong).toBeNull(); // TSV captions carry no kinds: all are short
    checkRetrieval(m.retrievalShort!, m.data.testImages, 2 * m.data.testImages);
    expect(m.cra!.images).toBe(m.data.testImages);
    expect(m.zeroShot).toBeNull();
    expect(fs.existsSync(path.join(tmp, 'real-out', 'data'))).toBe(false);
    expect(fs.readFileSync(r.reportPath, 'utf8')).toContain('n/a (no classes/ folder)');
  }, 240000);
});

describe('CLI', () => {
  const cli = path.join(__dirname, '..', 'dist', 'src', 'cli.js');
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60000 });
  test('demo --help, usage errors', () => {
    const h = run('demo', '--help');
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/usage: llm2clip demo/);
    expect(h.stdout).toMatch(/--quick/);
    expect(run('--help').stdout).toMatch(/demo/);
    expect(run('demo', '--nope').status).toBe(2);
    const bad = run('demo', '--device', 'tpu', '--out', path.join(tmp, 'cli-never'));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT.*device/);
    const seed = run('demo', '--seed', 'x', '--out', path.join(tmp, 'cli-never'));
    expect(seed.stderr).toMatch(/--seed/);
  });
});
