// image-data.test.ts: image-caption datasets (loadImageCaptions in every format, on small
// folders written here and on the real ../shared/data folders, skipped with a message where
// absent), the file-hash split (exact sizes, determinism, order independence) and
// validateImages on good, truncated and fake images.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { loadImageCaptions, splitByFile, validateImages, ImageCaptionItem } from '../src';
import { expectReject, realFile, tempDir } from './caption-data';

const tmp = tempDir('llm2clip-imgdata-');
afterAll(() => tmp.cleanup());

/** A small noisy JPEG (noise makes it long enough to truncate meaningfully). */
async function jpeg(w: number, h: number, seed: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let s = seed >>> 0;
  for (let i = 0; i < px.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    px[i] = s >>> 24;
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

function put(rel: string, data: Buffer | string): string {
  const p = path.join(tmp.dir, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  return p;
}

const jsonl = (records: unknown[]): string => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

let imgDir = '';
beforeAll(async () => {
  for (const [i, n] of ['a.jpg', 'b.jpg', 'c.jpg'].entries()) put(`small/images/${n}`, await jpeg(17 + i, 13, i + 1));
  imgDir = path.join(tmp.dir, 'small/images');
});

describe('loadImageCaptions: caption files', () => {
  test('flickr8k token file with split files: split selection, 5-caption order by #N', async () => {
    const tok = put('small/Flickr8k.token.txt', ['b.jpg#1\tb one', 'a.jpg#0\ta zero', 'b.jpg#0\tb zero', 'a.jpg#1\ta one', 'c.jpg#0\tc zero'].join('\n') + '\n');
    put('small/Flickr_8k.trainImages.txt', 'b.jpg\na.jpg\n');
    put('small/Flickr_8k.testImages.txt', 'c.jpg\n');
    const all = await loadImageCaptions({ images: imgDir, captions: tok, format: 'flickr8k' });
    expect(all.items).toEqual([
      { image: path.join(imgDir, 'b.jpg'), file: 'b.jpg', captions: ['b zero', 'b one'] },
      { image: path.join(imgDir, 'a.jpg'), file: 'a.jpg', captions: ['a zero', 'a one'] },
      { image: path.join(imgDir, 'c.jpg'), file: 'c.jpg', captions: ['c zero'] },
    ]);
    expect(all.skipped).toEqual([]);
    expect(all.classes).toBeUndefined();
    const test = await loadImageCaptions({ images: imgDir, captions: tok, split: 'test' });
    expect(test.items.map((i) => i.file)).toEqual(['c.jpg']);
    const train = await loadImageCaptions({ images: imgDir, captions: tok, split: 'train' });
    expect(train.items.map((i) => i.file)).toEqual(['b.jpg', 'a.jpg']);
  });

  test('captions.tsv, COCO JSON (file_name), JSONL (caption / captions, merged)', async () => {
    const tsv = put('small/tsv/captions.tsv', 'a.jpg\tfirst a\nc.jpg\tonly c\na.jpg\tsecond a\n');
    const t = await loadImageCaptions({ images: imgDir, captions: tsv, format: 'tsv' });
    expect(t.items.map((i) => [i.file, i.captions])).toEqual([['a.jpg', ['first a', 'second a']], ['c.jpg', ['only c']]]);

    const coco = put('small/coco.json', JSON.stringify({
      images: [{ id: 5, file_name: 'c.jpg' }, { id: 2, file_name: 'a.jpg' }],
      annotations: [{ image_id: 2, caption: 'coco a' }, { image_id: 5, caption: 'coco c' }, { image_id: 2, caption: 'coco a2' }],
    }));
    const c = await loadImageCaptions({ images: imgDir, captions: coco }); // detected from .json
    expect(c.items.map((i) => [i.file, i.captions])).toEqual([['c.jpg', ['coco c']], ['a.jpg', ['coco a', 'coco a2']]]);

    const jl = put('small/data.jsonl', jsonl([{ image: 'b.jpg', caption: 'jb' }, { image: 'a.jpg', captions: ['ja1', 'ja2'] }, { image: 'b.jpg', caption: 'jb2' }]));
    const j = await loadImageCaptions({ images: imgDir, captions: jl, format: 'jsonl' });
    expect(j.items.map((i) => [i.file, i.captions])).toEqual([['b.jpg', ['jb', 'jb2']], ['a.jpg', ['ja1', 'ja2']]]);
    expect(j.items[0].image).toBe(path.join(imgDir, 'b.jpg'));
    expect(j.items[0].kinds).toBeUndefined();
    // Long captions beside the short ones: kinds carried to the items (trainClip draws 50/50).
    const jl2 = put('small/long.jsonl', jsonl([{ image: 'a.jpg', caption: 'sa', long_caption: 'la' }, { image: 'a.jpg', caption: 'sa2' }, { image: 'c.jpg', caption: 'sc' }]));
    const j2 = await loadImageCaptions({ images: imgDir, captions: jl2 });
    expect(j2.items.map((i) => [i.file, i.captions, i.kinds])).toEqual([['a.jpg', ['sa', 'la', 'sa2'], ['short', 'long', 'short']], ['c.jpg', ['sc'], undefined]]);
  });

  test('missing images: IO_ERROR listing them, or skipped and counted', async () => {
    const jl = put('small/missing.jsonl', jsonl([{ image: 'a.jpg', caption: 'x' }, { image: 'zz1.jpg', caption: 'y' }, { image: 'zz2.jpg', caption: 'z' }]));
    await expectReject(loadImageCaptions({ images: imgDir, captions: jl }), 'IO_ERROR', /2 image\(s\).*zz1\.jpg.*zz2\.jpg/);
    const r = await loadImageCaptions({ images: imgDir, captions: jl, skipBadImages: true });
    expect(r.items.map((i) => i.file)).toEqual(['a.jpg']);
    expect(r.skipped).toEqual([{ file: path.join(imgDir, 'zz1.jpg'), reason: 'missing' }, { file: path.join(imgDir, 'zz2.jpg'), reason: 'missing' }]);
    const none = put('small/none.jsonl', jsonl([{ image: 'q.jpg', caption: 'x' }]));
    await expectReject(loadImageCaptions({ images: imgDir, captions: none, skipBadImages: true }), 'IO_ERROR', 'none of the images');
  });

  test('bad arguments', async () => {
    await expectReject(loadImageCaptions({ images: path.join(tmp.dir, 'nope') }), 'IO_ERROR', 'nope');
    await expectReject(loadImageCaptions({ images: imgDir, captions: path.join(tmp.dir, 'nope.tsv') }), 'IO_ERROR', 'nope.tsv');
    await expectReject(loadImageCaptions({ images: imgDir, format: 'bogus' as never }), 'INVALID_ARGUMENT', 'format');
    await expectReject(loadImageCaptions({ images: imgDir, format: 'tsv' }), 'INVALID_ARGUMENT', 'needs a captions file');
    await expectReject(loadImageCaptions({ images: imgDir, split: 'val' as never }), 'INVALID_ARGUMENT', 'split');
    const pairs = put('small/pairs.jsonl', jsonl([{ anchor: 'a', positive: 'b' }]));
    await expectReject(loadImageCaptions({ images: imgDir, captions: pairs }), 'INVALID_ARGUMENT', 'pairs');
  });
});

describe('loadImageCaptions: class folders', () => {
  test('sorted classes, labels, prompts, non-images ignored', async () => {
    const root = path.join(tmp.dir, 'cls');
    put('cls/zebra/2.jpg', await jpeg(8, 8, 9));
    put('cls/zebra/1.png', await sharp({ create: { width: 4, height: 4, channels: 3, background: '#102030' } }).png().toBuffer());
    put('cls/Ant/0001.jpg', await jpeg(8, 8, 10));
    put('cls/Ant/notes.txt', 'not an image');
    put('cls/cat/x.JPG', await jpeg(8, 8, 11));
    put('cls/README', 'a file, not a class');
    const r = await loadImageCaptions({ images: root, prompt: 'an image of {class}, a {class}' });
    expect(r.classes).toEqual(['Ant', 'cat', 'zebra']);
    expect(r.items.map((i) => [i.file, i.label, i.captions])).toEqual([
      ['Ant/0001.jpg', 0, ['an image of Ant, a Ant']],
      ['cat/x.JPG', 1, ['an image of cat, a cat']],
      ['zebra/1.png', 2, ['an image of zebra, a zebra']],
      ['zebra/2.jpg', 2, ['an image of zebra, a zebra']],
    ]);
    expect(r.items[0].image).toBe(path.join(root, 'Ant', '0001.jpg'));
    const d = await loadImageCaptions({ images: root, format: 'classes' });
    expect(d.items[1].captions).toEqual(['a photo of a cat.']);
    await expectReject(loadImageCaptions({ images: root, prompt: 'no placeholder' }), 'INVALID_ARGUMENT', '{class}');
    await expectReject(loadImageCaptions({ images: root, split: 'train' }), 'INVALID_ARGUMENT', 'splitByFile');
    await expectReject(loadImageCaptions({ images: imgDir }), 'IO_ERROR', 'no class folders');
  });
});

describe('splitByFile', () => {
  const items = (n: number): ImageCaptionItem[] => Array.from({ length: n }, (_, i) => ({ image: `/x/${i}.jpg`, file: `c${i % 3}/${i}.jpg`, captions: ['x'] }));

  test('deterministic, order-independent, seed-dependent, close to the fraction, pinned values', () => {
    const it = items(2000);
    const a = splitByFile(it, { seed: 3 });
    const b = splitByFile([...it].reverse(), { seed: 3 });
    expect(a.train.length + a.test.length).toBe(2000);
    expect(new Set(b.train.map((x) => x.file))).toEqual(new Set(a.train.map((x) => x.file)));
    expect(Math.abs(a.train.length / 2000 - 0.8)).toBeLessThan(0.04); // 4.5 sigma
    const c = splitByFile(it, { seed: 4 });
    expect(c.train.map((x) => x.file)).not.toEqual(a.train.map((x) => x.file));
    const half = splitByFile(it, { fraction: 0.5, seed: 3 });
    expect(Math.abs(half.train.length / 2000 - 0.5)).toBeLessThan(0.05);
    // items keep their order within each side; the absolute path does not matter
    const idx = a.train.map((x) => it.indexOf(x));
    expect(idx).toEqual([...idx].sort((p, q) => p - q));
    const moved = splitByFile(it.map((x) => ({ ...x, image: `/elsewhere${x.image}` })), { seed: 3 });
    expect(moved.train.map((x) => x.file)).toEqual(a.train.map((x) => x.file));
    // pinned: the hash (FNV-1a + hashInts) must not change across versions or machines
    expect(splitByFile(items(12), { seed: 0 }).test.map((x) => x.file)).toEqual(PINNED_TEST);
    expect(splitByFile(it, { fraction: 0 }).train).toEqual([]);
    expect(splitByFile(it, { fraction: 1 }).test).toEqual([]);
    // without `file`, the base name is the key
    expect(splitByFile([{ image: '/p/q/r.jpg' }], { fraction: 1 }).train).toHaveLength(1);
  });

  test('bad arguments', () => {
    expect(() => splitByFile(items(3), { fraction: 1.5 })).toThrow(/fraction/);
    expect(() => splitByFile(items(3), { seed: 0.5 })).toThrow(/seed/);
    expect(() => splitByFile([{} as ImageCaptionItem])).toThrow(/items\[0\]/);
  });
});

const PINNED_TEST: string[] = ['c1/7.jpg', 'c2/11.jpg'];

describe('validateImages', () => {
  test('good images pass; truncated JPEG and text-as-.jpg fail naming the file, or are skipped', async () => {
    const good = put('bad/good.jpg', await jpeg(64, 48, 5));
    const whole = await jpeg(64, 48, 6);
    const trunc = put('bad/trunc.jpg', whole.subarray(0, Math.floor(whole.length / 2)));
    const text = put('bad/text.jpg', 'this is not a JPEG\n');
    const empty = put('bad/empty.jpg', Buffer.alloc(0));
    const it = (p: string): ImageCaptionItem => ({ image: p, file: path.basename(p), captions: ['c'] });
    const ok = await validateImages([it(good)]);
    expect(ok.items).toHaveLength(1);
    expect(ok.skipped).toEqual([]);
    await expectReject(validateImages([it(good), it(trunc)]), 'CORRUPT_FILE', trunc);
    await expectReject(validateImages([it(text)]), 'CORRUPT_FILE', text);
    await expectReject(validateImages([it(empty)]), 'CORRUPT_FILE', empty);
    await expectReject(validateImages([it(path.join(tmp.dir, 'bad/gone.jpg'))]), 'IO_ERROR', 'gone.jpg');
    const r = await validateImages([it(trunc), it(good), it(text), it(empty)], { skipBadImages: true });
    expect(r.items.map((x) => x.image)).toEqual([good]);
    expect(r.skipped.map((s) => s.file)).toEqual([trunc, text, empty]);
    for (const s of r.skipped) expect(s.reason).toMatch(/\w/);
    // headers only (size 0): the truncated file's header is intact, the text file has none
    const hdr = await validateImages([it(trunc), it(text)], { skipBadImages: true, size: 0 });
    expect(hdr.skipped.map((s) => s.file)).toEqual([text]);
    await expect(validateImages([it(good)], { size: -1 })).rejects.toThrow(/size/);
  });
});

describe('real data (../shared/data)', () => {
  const flickr = realFile('flickr8k_images_1k/captions.tsv', 'image-data.test');
  const cifar = realFile('cifar10_test', 'image-data.test');
  const ftest = flickr ? test : test.skip;
  const ctest = cifar ? test : test.skip;

  ftest('flickr8k_images_1k: 1000 images x 5 captions; split files 753 / 113 / 125; hash split 816 / 184', async () => {
    const images = path.join(path.dirname(flickr as string), 'images');
    const all = await loadImageCaptions({ images, captions: flickr as string });
    expect(all.items).toHaveLength(1000);
    expect(all.skipped).toEqual([]);
    expect(all.items.every((i) => i.captions.length === 5 && fs.existsSync(i.image))).toBe(true);
    const sizes: number[] = [];
    for (const split of ['train', 'dev', 'test'] as const) sizes.push((await loadImageCaptions({ images, captions: flickr as string, split })).items.length);
    expect(sizes).toEqual([753, 113, 125]);
    const s = splitByFile(all.items, { seed: 0 });
    expect([s.train.length, s.test.length]).toEqual([816, 184]);
    const v = await validateImages(all.items.slice(0, 20));
    expect(v.items).toHaveLength(20);
  });

  ctest('cifar10_test: 10 classes x 1000; hash split 8031 / 1969 (seed 0), 7988 / 2012 (seed 1)', async () => {
    const r = await loadImageCaptions({ images: cifar as string });
    expect(r.classes).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    expect(r.items).toHaveLength(10000);
    const perClass = new Array(10).fill(0);
    for (const i of r.items) perClass[i.label as number]++;
    expect(perClass).toEqual(new Array(10).fill(1000));
    expect(r.items[3000].captions).toEqual(['a photo of a cat.']);
    const s0 = splitByFile(r.items, { seed: 0 });
    expect([s0.train.length, s0.test.length]).toEqual([8031, 1969]);
    const again = splitByFile(r.items, { seed: 0 });
    expect(again.test.map((i) => i.file)).toEqual(s0.test.map((i) => i.file));
    const s1 = splitByFile(r.items, { seed: 1 });
    expect([s1.train.length, s1.test.length]).toEqual([7988, 2012]);
  });
});
