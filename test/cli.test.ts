// cli.test.ts: the `llm2clip` command as installed (dist/src/cli.js): help on every
// command, eval-cra's JSON on a small caption file, cc-finetune end to end on a few
// captions, and usage errors with exit code 2.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const cli = path.join(__dirname, '..', 'dist', 'src', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 180000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// Four images, two captions each: TF-IDF gets images 0-2 right and confuses image 3's query.
const CAPTIONS = [
  { image: 'a.jpg', captions: ['a black dog runs on the beach', 'a dog running on sand by the sea'] },
  { image: 'b.jpg', captions: ['two children build a snowman', 'kids in the snow making a snowman'] },
  { image: 'c.jpg', captions: ['a man rides a red bicycle', 'a cyclist on a red bike in the street'] },
  { image: 'd.jpg', captions: ['a dog on the beach at sunset', 'an old boat rests in the harbour'] },
];

test('help for every command', () => {
  for (const cmd of [[], ['--help'], ['cc-finetune', '--help'], ['eval-cra', '--help']]) {
    const r = run(...cmd);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/usage: llm2clip/);
  }
});

test('eval-cra --tfidf --json on a JSONL captions file', () => {
  const file = path.join(tmp, 'caps.jsonl');
  fs.writeFileSync(file, CAPTIONS.map((c) => JSON.stringify(c)).join('\n') + '\n');
  const r = run('eval-cra', '--data', file, '--tfidf', '--json');
  expect(r.code).toBe(0);
  const j = JSON.parse(r.out);
  expect(j.images).toBe(4);
  expect(j.cra).toBe(0.75);
});

test('usage errors exit with 2; data errors name the file and line', () => {
  expect(run('eval-cra', '--nope').code).toBe(2);
  expect(run('cc-finetune').code).toBe(2);
  expect(run('frobnicate').code).toBe(2);
  const bad = path.join(tmp, 'bad.jsonl');
  fs.writeFileSync(bad, JSON.stringify(CAPTIONS[0]) + '\n{"image": 3, "captions": "x"\n');
  const r = run('eval-cra', '--data', bad, '--tfidf', '--format', 'captions');
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/bad\.jsonl:2/);
});

test('train-clip -> eval-retrieval and zeroshot on class folders (tiny models)', async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sharp = require('sharp');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const l = require('../src');
  const imgs = path.join(tmp, 'classes');
  const colours: [string, number, number, number][] = [['red', 220, 30, 30], ['green', 30, 200, 40], ['blue', 30, 40, 220]];
  for (const [name, r, g, b] of colours) {
    fs.mkdirSync(path.join(imgs, name), { recursive: true });
    for (let i = 0; i < 6; i++)
      await sharp({ create: { width: 16, height: 16, channels: 3, background: { r, g: Math.min(255, g + i * 5), b } } }).png().toFile(path.join(imgs, name, `${i}.png`));
  }
  const tok = l.trainBpeTokenizer(colours.map(([n]) => `a photo of a ${n}.`), { vocabSize: 280, minFrequency: 1 });
  const text = path.join(tmp, 'text');
  await l.saveLlamaPretrained(new l.LlamaEncoder(l.tinyLlamaConfig({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tok.vocabSize }), { seed: 1 }), text, tok);
  const out = path.join(tmp, 'clip');
  const t = run('train-clip', '--images', imgs, '--format', 'classes', '--text-model', text, '--image-size', '16', '--epochs', '3', '--batch-size', '6', '--out', out, '--quiet');
  expect(t.err).toBe('');
  expect(t.code).toBe(0);
  expect(JSON.parse(t.out).steps).toBe(9);
  const z = run('zeroshot', '--images', imgs, '--model', out, '--json');
  expect(z.code).toBe(0);
  const zj = JSON.parse(z.out);
  expect(zj).toMatchObject({ classes: 3, images: 18, chance: 1 / 3 });
  expect(zj.accuracy).toBeGreaterThanOrEqual(0);
  const capFile = path.join(tmp, 'caps.tsv');
  fs.writeFileSync(capFile, colours.flatMap(([n]) => [0, 1, 2].map((i) => `${n}/${i}.png\ta photo of a ${n}.`)).join('\n') + '\n');
  const e = run('eval-retrieval', '--images', imgs, '--captions', capFile, '--format', 'tsv', '--model', out, '--json');
  expect(e.code).toBe(0);
  const ej = JSON.parse(e.out);
  expect(ej.images).toBe(9);
  expect(ej.chance.t2i.r1).toBeCloseTo(1 / 9);
  // --kind: only the short or only the long captions of a JSONL with long_caption.
  const jl = path.join(tmp, 'caps.jsonl');
  fs.writeFileSync(jl, colours.flatMap(([n]) => [0, 1, 2].map((i) => JSON.stringify({ image: `${n}/${i}.png`, caption: `a ${n}.`, long_caption: `a photo of a ${n}, shade ${i}.` }))).join('\n') + '\n');
  for (const kind of ['short', 'long']) {
    const k = run('eval-retrieval', '--images', imgs, '--captions', jl, '--model', out, '--kind', kind, '--json');
    expect(k.code).toBe(0);
    expect(JSON.parse(k.out)).toMatchObject({ images: 9, captions: 9 });
  }
  expect(JSON.parse(run('eval-retrieval', '--images', imgs, '--captions', jl, '--model', out, '--json').out).captions).toBe(18);
  expect(run('eval-retrieval', '--images', imgs, '--captions', jl, '--model', out, '--kind', 'medium').err).toMatch(/--kind must be short or long/);
  const ld = run('train-clip', '--images', imgs, '--format', 'classes', '--text-model', text, '--image-size', '16', '--epochs', '1', '--batch-size', '6', '--out', path.join(tmp, 'clip-ld'), '--quiet', '--layer-decay', '0.7', '--long-prob', '0.3');
  expect(ld.code).toBe(0);
  const bad = run('train-clip', '--images', imgs, '--format', 'classes', '--text-model', text, '--out', path.join(tmp, 'clip-bad'), '--quiet', '--lr', 'fast');
  expect(bad.code).toBe(1);
  expect(bad.err).toMatch(/--lr must be a number/);
  const badNan = run('train-clip', '--images', imgs, '--format', 'classes', '--text-model', text, '--out', path.join(tmp, 'clip-bad'), '--quiet', '--nan-policy', 'maybe');
  expect(badNan.err).toMatch(/--nan-policy must be stop or skip/);
  expect(run('train-clip', '--help').out).toMatch(/usage: llm2clip train-clip/);

  // Ctrl-C mid-run: handled at the next step (not the next checkpoint), a checkpoint is
  // written, exit 130; --resume finishes the run.
  const intr = path.join(tmp, 'clip-int');
  const args = [cli, 'train-clip', '--images', imgs, '--format', 'classes', '--text-model', text, '--image-size', '16', '--epochs', '400', '--batch-size', '6', '--out', intr, '--quiet', '--checkpoint-every', '100000'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = path.join(intr, 'log.jsonl');
  const lines = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).length : 0);
  for (let i = 0; i < 600 && lines() < 3; i++) await new Promise((r) => setTimeout(r, 100));
  expect(lines()).toBeGreaterThanOrEqual(3);
  const sent = Date.now();
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  expect(code).toBe(130);
  expect(Date.now() - sent).toBeLessThan(15000);
  const at = lines();
  expect(at).toBeLessThan(1200);
  expect(fs.existsSync(path.join(intr, 'checkpoints', 'LATEST'))).toBe(true);
  // Resumed with a shorter schedule (2 epochs = 6 steps) it continues from the checkpoint.
  const resumed = run(...args.slice(1).map((a) => (a === '400' ? '2' : a)), '--resume');
  expect(resumed.code).toBe(0);
  expect(JSON.parse(resumed.out).steps).toBe(Math.max(6, at));
}, 180000);
