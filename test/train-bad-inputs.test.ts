// train-bad-inputs.test.ts: bad data and output folders given to the trainers are typed
// errors naming the thing, raised before any training: empty or one-caption datasets,
// malformed caption files, items without captions, missing and non-image images, an
// output folder that is a file, and a corrupt checkpoint on resume.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { ccFinetune, trainClip, LlamaEncoder, tinyLlamaConfig, trainBpeTokenizer, CcFinetuneOptions } from '../src';
import { expectCodeAsync } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-badtrain-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const SIZES = { hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 300 };
const cc = (extra: Partial<CcFinetuneOptions>): CcFinetuneOptions => ({
  data: { format: 'captions', source: 'x', images: [] }, model: 'tiny', presetSizes: SIZES, mntpSteps: 0, steps: 2, batchSize: 4, outputDir: path.join(tmp, 'cc'), progress: false, ...extra,
});

describe('ccFinetune', () => {
  test('an empty dataset, or one with a single caption: INVALID_ARGUMENT naming the source', async () => {
    await expectCodeAsync(ccFinetune(cc({})), 'INVALID_ARGUMENT', /0 captions/, /\(x\)/);
    await expectCodeAsync(ccFinetune(cc({ data: { format: 'captions', source: 'one', images: [{ id: 'a', captions: ['only one'] }] } })), 'INVALID_ARGUMENT', /1 captions/);
  });

  test('malformed caption files: CORRUPT_FILE naming file and line; an empty file; a missing one IO_ERROR', async () => {
    const bad = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(bad, '{"image": "a.jpg", "captions": ["x"]}\n{"image": "b.jpg", "captions": [\n');
    await expectCodeAsync(ccFinetune(cc({ data: bad })), 'CORRUPT_FILE', new RegExp(`${bad.replace(/[.]/g, '\\.')}:2`));
    const empty = path.join(tmp, 'empty.jsonl');
    fs.writeFileSync(empty, '');
    const e = await expectCodeAsync(ccFinetune(cc({ data: empty, format: 'captions' })), 'CORRUPT_FILE', /empty\.jsonl/);
    expect(e.message).toMatch(/no records/);
    await expectCodeAsync(ccFinetune(cc({ data: path.join(tmp, 'absent.jsonl') })), 'IO_ERROR', /absent\.jsonl/);
  });

  test('an output folder that is a file: IO_ERROR naming it (was a raw EEXIST / ENOTDIR)', async () => {
    const f = path.join(tmp, 'a-file');
    fs.writeFileSync(f, 'x');
    const images = [{ id: 'a', captions: ['a dog runs', 'the dog runs'] }, { id: 'b', captions: ['a cat sleeps', 'the cat sleeps'] }];
    await expectCodeAsync(ccFinetune(cc({ data: { format: 'captions', source: 's', images }, outputDir: f })), 'IO_ERROR', /outputDir/, /a-file/);
    await expectCodeAsync(ccFinetune(cc({ data: { format: 'captions', source: 's', images }, outputDir: path.join(f, 'sub') })), 'IO_ERROR', /a-file/);
  });

  test('resume from a corrupt checkpoint: CORRUPT_FILE naming the file', async () => {
    const out = path.join(tmp, 'resume-corrupt');
    const images = Array.from({ length: 8 }, (_, i) => ({ id: `i${i}`, captions: [`a thing ${i}`, `the thing ${i}`] }));
    const o = cc({ data: { format: 'captions', source: 's', images }, outputDir: out, steps: 2, checkpointEvery: 1 });
    await ccFinetune(o);
    const ckDir = path.join(out, 'checkpoints');
    const latest = fs.readFileSync(path.join(ckDir, 'LATEST'), 'utf8').trim();
    const f = path.join(ckDir, latest, 'optim.safetensors');
    const b = fs.readFileSync(f);
    b.writeBigUInt64LE(2n ** 40n, 0);
    fs.writeFileSync(f, b);
    await expectCodeAsync(ccFinetune({ ...o, resume: true }), 'CORRUPT_FILE', /optim\.safetensors/, /header length/);
  });
});

describe('trainClip', () => {
  let encoder: LlamaEncoder;
  let tokenizer: ReturnType<typeof trainBpeTokenizer>;
  let good: string;
  beforeAll(async () => {
    tokenizer = trainBpeTokenizer(['a red picture', 'a blue picture'], { vocabSize: 300, minFrequency: 1 });
    encoder = new LlamaEncoder(tinyLlamaConfig({ ...SIZES, vocabSize: tokenizer.vocabSize }), { seed: 1 });
    good = path.join(tmp, 'good.png');
    await sharp({ create: { width: 9, height: 9, channels: 3, background: { r: 200, g: 0, b: 0 } } }).png().toFile(good);
  });
  const base = () => ({ textModel: encoder, tokenizer, vision: 'tiny' as const, imageSize: 16, embedDim: 8, epochs: 1, outputDir: path.join(tmp, 'clip'), progress: false });

  test('fewer than 2 images, an item without captions, a bad batch size: INVALID_ARGUMENT naming the item or option', async () => {
    await expectCodeAsync(trainClip({ ...base(), items: [] }), 'INVALID_ARGUMENT', /at least 2 images/);
    await expectCodeAsync(trainClip({ ...base(), items: [{ image: good, file: 'g', captions: ['a red picture'] }] }), 'INVALID_ARGUMENT', /at least 2/);
    await expectCodeAsync(trainClip({ ...base(), items: [{ image: good, file: 'g', captions: ['a'] }, { image: good, file: 'g', captions: [] }] }), 'INVALID_ARGUMENT', /items\[1\]/);
    await expectCodeAsync(trainClip({ ...base(), items: [{ image: good, file: 'g', captions: ['a'] }, { image: good, file: 'g', captions: ['b'] }], batchSize: 0 }), 'INVALID_ARGUMENT', /batchSize/);
  });

  test('a missing image is IO_ERROR and a text file named .png CORRUPT_FILE, each naming the file', async () => {
    const txt = path.join(tmp, 'not-an-image.png');
    fs.writeFileSync(txt, 'hello');
    const items = (img: string) => [{ image: good, file: 'g', captions: ['a red picture'] }, { image: img, file: 'x', captions: ['a blue picture'] }];
    await expectCodeAsync(trainClip({ ...base(), items: items(path.join(tmp, 'nope.png')) }), 'IO_ERROR', /nope\.png/);
    await expectCodeAsync(trainClip({ ...base(), items: items(txt) }), 'CORRUPT_FILE', /not-an-image\.png/);
  });

  test('an output folder that is a file: IO_ERROR naming it', async () => {
    const f = path.join(tmp, 'clip-file');
    fs.writeFileSync(f, 'x');
    await expectCodeAsync(trainClip({ ...base(), items: [{ image: good, file: 'g', captions: ['a'] }, { image: good, file: 'g', captions: ['b'] }], outputDir: f }), 'IO_ERROR', /clip-file/);
  });
});
