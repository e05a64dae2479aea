// readme.test.ts: the README's examples marked `// README example: NAME` run as written,
// with the placeholders they name (model directories, image files) replaced by small
// fixtures made here, and `llm2clip` resolved to this checkout's src/.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import sharp from 'sharp';
import { LlamaEncoder, ClipVisionEncoder, trainBpeTokenizer, saveLlamaPretrained, tinyLlamaConfig, saveSafetensors } from '../src';

const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
const examples = new Map<string, string>();
for (const m of readme.matchAll(/```ts\n\/\/ README example: (\S+)\n([\s\S]*?)```/g)) examples.set(m[1], m[2]);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-readme-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function run(name: string, replace: Record<string, string>): Promise<Record<string, unknown>> {
  let code = examples.get(name);
  if (!code) throw new Error(`README has no example ${name}`);
  for (const [from, to] of Object.entries(replace)) {
    if (!code.includes(from)) throw new Error(`README example ${name} no longer mentions ${from}`);
    code = code.split(from).join(to);
  }
  const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
  const exportsObj: Record<string, unknown> = {};
  const req = (m: string) => (m === 'llm2clip' ? require('../src') : require(m));
  const cwd = process.cwd();
  process.chdir(tmp);
  try {
    // Top-level await: run the module body inside an async function.
    const body = `return (async () => {\n${js}\n})();`;
    await new Function('require', 'exports', 'module', 'console', body)(req, exportsObj, { exports: exportsObj }, { log: () => undefined });
  } finally {
    process.chdir(cwd);
  }
  return exportsObj;
}

test('README example: encoder (load a model, add LoRA, encode text, train a step, save the adapter)', async () => {
  const dir = path.join(tmp, 'llama');
  const tok = trainBpeTokenizer(['a dog runs on the beach', 'a brown dog is running along the sea shore', 'two children play in the snow', 'kids play outside in winter'], { vocabSize: 320, minFrequency: 1 });
  const cfg = tinyLlamaConfig({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tok.vocabSize, bosTokenId: tok.bosId, eosTokenId: tok.eosId, padTokenId: tok.padId });
  await saveLlamaPretrained(new LlamaEncoder(cfg, { seed: 1 }), dir, tok);
  await run('encoder', { 'Meta-Llama-3-8B-Instruct': dir });
  expect(fs.existsSync(path.join(tmp, 'my-adapter', 'adapter_config.json'))).toBe(true);
  expect(fs.existsSync(path.join(tmp, 'my-adapter', 'adapter_model.safetensors'))).toBe(true);
});

test('README example: vision (a CLIP ViT on image files, the LLM2CLIP adapter)', async () => {
  const dir = path.join(tmp, 'clip');
  fs.mkdirSync(dir);
  const vision = new ClipVisionEncoder({ hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, imageSize: 32, patchSize: 8, projectionDim: 24 }, { seed: 2 });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4, image_size: 32, patch_size: 8, projection_dim: 24, hidden_act: 'quick_gelu' }));
  await saveSafetensors(path.join(dir, 'model.safetensors'), vision.stateDict());
  const img = (r: number, g: number) => sharp({ create: { width: 48, height: 40, channels: 3, background: { r, g, b: 90 } } }).jpeg().toBuffer();
  fs.writeFileSync(path.join(tmp, 'a.jpg'), await img(200, 30));
  fs.writeFileSync(path.join(tmp, 'b.jpg'), await img(20, 220));
  await run('vision', { 'openai/clip-vit-large-patch14-336': dir, 'cat.jpg': path.join(tmp, 'a.jpg'), 'dog.jpg': path.join(tmp, 'b.jpg'), '4096': '32' });
});

test('README example: pipeline (writeWorld -> ccFinetune -> trainClip -> retrieval)', async () => {
  // Smaller and shorter than written (the README's sizes take minutes); the calls are the same.
  const out = await run('pipeline', {
    'train: 600, test: 100': 'train: 40, test: 12, perClass: 1',
    'mntpSteps: 60, steps: 80': "mntpSteps: 2, steps: 2, batchSize: 8, chunkSize: 8, mntpBatchSize: 8, presetSizes: { hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 300 }, progress: false",
    'epochs: 10': 'epochs: 1, batchSize: 16, microBatch: 8, embedDim: 16, adapterBlocks: 1, progress: false',
    'console.log(': 'exports.r = (',
  });
  const r = out.r as string;
  expect(r).toMatch(/^text->image R@1 [0-9.]+ \(chance 0\.08333/);
  for (const f of ['cc/base/config.json', 'cc/adapter/adapter_config.json', 'clip/vision/config.json', 'clip/text_adapter/config.json'])
    expect(fs.existsSync(path.join(tmp, f))).toBe(true);
}, 120000);
