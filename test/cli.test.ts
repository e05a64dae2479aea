// cli.test.ts: the `llm2clip` command as installed (dist/src/cli.js): help on every
// command, eval-cra's JSON on a small caption file, cc-finetune end to end on a few
// captions, and usage errors with exit code 2.
import { spawnSync } from 'child_process';
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
