// captions.test.ts: every caption format read from small files written here and from the
// real files in ../shared/data (skipped with a message where absent); malformed records
// rejected with FILE:LINE; format detection; split selection; the sentence splitter.
import * as path from 'path';
import { loadCaptions, splitSentences, firstSentence, captionTexts, CaptionDataset } from '../src';
import { expectReject, realFile, tempDir } from './caption-data';

const tmp = tempDir('llm2clip-captions-');
afterAll(() => tmp.cleanup());

const jsonl = (records: unknown[]): string => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('COCO captions JSON', () => {
  const coco = {
    images: [
      { id: 7, file_name: 'a.jpg' },
      { id: 3, file_name: 'b.jpg' },
      { id: 9, file_name: 'c.jpg' },
    ],
    annotations: [
      { image_id: 3, caption: ' a dog on grass ' },
      { image_id: 7, caption: 'a red car' },
      { image_id: 3, caption: 'a brown dog' },
    ],
  };

  test('official layout: images in order, captions in annotation order, uncaptioned images dropped', async () => {
    const f = tmp.write('coco/captions_val.json', JSON.stringify(coco, null, 1));
    const ds = await loadCaptions(f);
    expect(ds.format).toBe('coco');
    expect(ds.images).toEqual([
      { id: '7', file: 'a.jpg', captions: ['a red car'] },
      { id: '3', file: 'b.jpg', captions: ['a dog on grass', 'a brown dog'] },
    ]);
    await expectReject(loadCaptions(f, { split: 'test' }), 'INVALID_ARGUMENT', 'no split information');
  });

  test('Karpathy layout with splits (restval -> train, val -> dev)', async () => {
    const k = {
      images: [
        { filename: 'x.jpg', split: 'restval', sentences: [{ raw: 'one' }, { raw: 'two' }] },
        { filename: 'y.jpg', split: 'val', sentences: [{ raw: 'three' }] },
        { filename: 'z.jpg', split: 'test', sentences: [{ raw: 'four' }, { raw: 'five' }] },
      ],
    };
    const f = tmp.write('karpathy.json', JSON.stringify(k));
    const all = await loadCaptions(f);
    expect(all.images.map((i) => [i.id, i.split, i.captions.length])).toEqual([['x.jpg', 'train', 2], ['y.jpg', 'dev', 1], ['z.jpg', 'test', 2]]);
    const test = await loadCaptions(f, { split: 'test' });
    expect(test.images.map((i) => i.id)).toEqual(['z.jpg']);
  });

  test('an annotation of an unknown image, a bad caption, bad JSON, a missing file', async () => {
    const bad = { ...coco, annotations: [...coco.annotations, { image_id: 4, caption: 'x' }] };
    const f1 = tmp.write('bad1.json', JSON.stringify(bad));
    await expectReject(loadCaptions(f1), 'CORRUPT_FILE', `${f1}: annotations[3]: image_id 4 is not in "images"`);
    const f2 = tmp.write('bad2.json', JSON.stringify({ ...coco, annotations: [{ image_id: 7, caption: 5 }] }));
    await expectReject(loadCaptions(f2), 'CORRUPT_FILE', 'annotations[0]: "caption" must be a non-empty string');
    const f3 = tmp.write('bad3.json', '{\n  "images": [\n    {"id": 1,}\n  ]\n}\n');
    await expectReject(loadCaptions(f3), 'CORRUPT_FILE', `${f3}:3: invalid JSON`);
    const f4 = tmp.write('bad4.json', JSON.stringify({ images: [{ id: 1 }, { id: 1 }], annotations: [] }));
    await expectReject(loadCaptions(f4), 'CORRUPT_FILE', 'images[1]: duplicate image id 1');
    await expectReject(loadCaptions(path.join(tmp.dir, 'nope.json')), 'IO_ERROR', 'nope.json');
  });
});

describe('Flickr8k token file and captions.tsv', () => {
  const token = [
    'b.jpg#1\tsecond of b .',
    'b.jpg#0\tfirst of b .',
    'a.jpg.1#0\tglitched key of a',
    'a.jpg#1\tsecond of a',
    '',
    'c.jpg#0\tonly c',
  ].join('\r\n');

  test('captions ordered by #N, the glitched key mapped to its image, splits from the split files', async () => {
    const f = tmp.write('f8k/Flickr8k.token.txt', token);
    tmp.write('f8k/Flickr_8k.trainImages.txt', 'a.jpg\nzzz.jpg\n');
    tmp.write('f8k/Flickr_8k.testImages.txt', 'b.jpg\n');
    const ds = await loadCaptions(f);
    expect(ds.format).toBe('flickr8k');
    expect(ds.images).toEqual([
      { id: 'b.jpg', captions: ['first of b .', 'second of b .'], split: 'test' },
      { id: 'a.jpg', captions: ['glitched key of a', 'second of a'], split: 'train' },
      { id: 'c.jpg', captions: ['only c'] },
    ]);
    expect((await loadCaptions(f, { split: 'train' })).images.map((i) => i.id)).toEqual(['a.jpg']);
    expect((await loadCaptions(path.dirname(f), { split: 'test' })).images.map((i) => i.id)).toEqual(['b.jpg']);
    await expectReject(loadCaptions(f, { split: 'dev' }), 'IO_ERROR', 'Flickr_8k.devImages.txt');
    await expectReject(loadCaptions(f, { split: 'validation' as 'dev' }), 'INVALID_ARGUMENT', 'split must be one of');
  });

  test('captions.tsv (no #N) keeps file order', async () => {
    const f = tmp.write('tsv/captions.tsv', 'p.jpg\tone\nq.jpg\ttwo\np.jpg\tthree\n');
    const ds = await loadCaptions(f);
    expect(ds.images).toEqual([
      { id: 'p.jpg', captions: ['one', 'three'] },
      { id: 'q.jpg', captions: ['two'] },
    ]);
  });

  test('malformed lines name file and line', async () => {
    const f1 = tmp.write('m1/Flickr8k.token.txt', 'a.jpg#0\tok\na.jpg#1 no tab here\n');
    await expectReject(loadCaptions(f1), 'CORRUPT_FILE', `${f1}:2: expected IMAGE<TAB>caption`);
    const f2 = tmp.write('m2/Flickr8k.token.txt', 'a.jpg#0\tok\n\na.jpg#0\tagain\n');
    await expectReject(loadCaptions(f2), 'CORRUPT_FILE', `${f2}:3: a.jpg#0 is given twice (also at line 1)`);
    const f3 = tmp.write('m3/captions.tsv', 'a.jpg\tok\nb.jpg\t   \n');
    await expectReject(loadCaptions(f3), 'CORRUPT_FILE', `${f3}:2: empty caption for b.jpg`);
    const f4 = tmp.write('m4/Flickr8k.token.txt', 'a.jpg#0\tok\n');
    const s4 = tmp.write('m4/Flickr_8k.trainImages.txt', 'a.jpg\n');
    tmp.write('m4/Flickr_8k.testImages.txt', '\na.jpg\n');
    await expectReject(loadCaptions(f4), 'CORRUPT_FILE', `a.jpg is also in the train split (${s4}:1)`);
  });
});

describe('JSONL formats', () => {
  test('pairs: anchor, positive, optional negative', async () => {
    const f = tmp.write('p/pairs.jsonl', jsonl([{ anchor: 'a', positive: 'b' }, { anchor: 'c', positive: 'd', negative: 'e' }]));
    const ds = await loadCaptions(f);
    expect(ds.format).toBe('pairs');
    expect(ds.images).toEqual([]);
    expect(ds.pairs).toEqual([{ anchor: 'a', positive: 'b' }, { anchor: 'c', positive: 'd', negative: 'e' }]);
    expect(captionTexts(ds)).toEqual(['a', 'b', 'c', 'd', 'e']);
    const bad = tmp.write('p/bad.jsonl', '{"anchor": "a", "positive": "b"}\n\n{"anchor": "a"}\n');
    await expectReject(loadCaptions(bad, { format: 'pairs' }), 'CORRUPT_FILE', `${bad}:3: "positive" must be a non-empty string`);
    const bad2 = tmp.write('p/bad2.jsonl', '{"anchor": "a", "positive": "b"}\n{"anchor": "a", "positive": "b"\n');
    await expectReject(loadCaptions(bad2, { format: 'pairs' }), 'CORRUPT_FILE', `${bad2}:2: invalid JSON`);
    const bad3 = tmp.write('p/bad3.jsonl', '["a", "b"]\n');
    await expectReject(loadCaptions(bad3, { format: 'pairs' }), 'CORRUPT_FILE', `${bad3}:1: expected a JSON object`);
    await expectReject(loadCaptions(f, { split: 'train' }), 'INVALID_ARGUMENT', 'no splits');
  });

  test('captions: records merged per image, optional split', async () => {
    const f = tmp.write('c/caps.jsonl', jsonl([
      { image: 'i1', captions: ['x', 'y'], split: 'train' },
      { image: 2, caption: 'z' },
      { image: 'i1', captions: ['w'], split: 'train' },
    ]));
    const ds = await loadCaptions(f);
    expect(ds.format).toBe('captions');
    expect(ds.images).toEqual([{ id: 'i1', captions: ['x', 'y', 'w'], split: 'train' }, { id: '2', captions: ['z'] }]);
    expect((await loadCaptions(f, { split: 'train' })).images.length).toBe(1);
    expect(captionTexts({ ...ds, images: [...ds.images, { id: '3', captions: ['x', 'q'] }] }, { unique: true })).toEqual(['x', 'y', 'w', 'z', 'q']);
    const bad = tmp.write('c/bad.jsonl', jsonl([{ image: 'i1', captions: ['x'] }, { image: 'i2', captions: ['ok', ''] }]));
    await expectReject(loadCaptions(bad), 'CORRUPT_FILE', `${bad}:2: captions[1] must be a non-empty string`);
    const bad2 = tmp.write('c/bad2.jsonl', jsonl([{ captions: ['x'] }]));
    await expectReject(loadCaptions(bad2, { format: 'captions' }), 'CORRUPT_FILE', `${bad2}:1: "image" must be`);
  });

  test('captions with long_caption(s): short ones first, then the long, kinds label them; merged records keep kinds aligned', async () => {
    const f = tmp.write('c/long.jsonl', jsonl([
      { image: 'i1', caption: 'a cat', long_caption: 'a grey cat asleep on a red sofa by the window' },
      { image: 'i2', long_captions: ['long one', 'long two'] },
      { image: 'i1', captions: ['a pet'] },
      { image: 'i3', captions: ['plain'] },
    ]));
    const ds = await loadCaptions(f); // detected as 'captions'
    expect(ds.format).toBe('captions');
    expect(ds.images).toEqual([
      { id: 'i1', captions: ['a cat', 'a grey cat asleep on a red sofa by the window', 'a pet'], kinds: ['short', 'long', 'short'] },
      { id: 'i2', captions: ['long one', 'long two'], kinds: ['long', 'long'] },
      { id: 'i3', captions: ['plain'] },
    ]);
    const only = tmp.write('c/long-only.jsonl', jsonl([{ image: 'x', long_caption: 'just long' }]));
    expect((await loadCaptions(only)).images).toEqual([{ id: 'x', captions: ['just long'], kinds: ['long'] }]);
    const bad = tmp.write('c/long-bad.jsonl', jsonl([{ image: 'x', caption: 'a', long_caption: '' }]));
    await expectReject(loadCaptions(bad), 'CORRUPT_FILE', `${bad}:1: "long_caption" must be a non-empty string`);
    const bad2 = tmp.write('c/long-bad2.jsonl', jsonl([{ image: 'x', long_captions: ['ok', 3] }]));
    await expectReject(loadCaptions(bad2), 'CORRUPT_FILE', `${bad2}:1: long_captions[1] must be a non-empty string`);
  });

  test('ImageInWords: short = first sentence of IIW, then the long texts; kinds label them', async () => {
    const iiw = 'A red car, e.g. a Mini, parks by Mr. Smith\'s 3.5 m wall. The sky is blue. Two birds fly.';
    const f = tmp.write('i/data.jsonl', jsonl([
      { DOCCI: 'A small red car by a wall.', IIW: iiw, image: 'img1', 'metrics/Hallucination': 'Neutral' },
      { 'IIW-P5B': 'One sentence only.', 'image/key': 'k2' },
      { 'IIW-P5B': 'Model text. With two sentences.' },
    ]));
    const ds = await loadCaptions(f);
    expect(ds.format).toBe('iiw');
    expect(ds.images[0]).toEqual({
      id: 'img1',
      captions: ["A red car, e.g. a Mini, parks by Mr. Smith's 3.5 m wall.", 'A small red car by a wall.', iiw],
      kinds: ['short', 'long', 'long'],
    });
    expect(ds.images[1]).toEqual({ id: 'k2', captions: ['One sentence only.'], kinds: ['long'] });
    expect(ds.images[2]).toEqual({ id: 'data.jsonl:3', captions: ['Model text.', 'Model text. With two sentences.'], kinds: ['short', 'long'] });
    const bad = tmp.write('i/bad.jsonl', jsonl([{ IIW: 'Fine.', image: 'a' }, { IIW: 42, image: 'b' }]));
    await expectReject(loadCaptions(bad, { format: 'iiw' }), 'CORRUPT_FILE', `${bad}:2: "IIW" must be a non-empty string, got 42`);
    const bad2 = tmp.write('i/bad2.jsonl', jsonl([{ IIW: 'Fine.', image: 'a' }, { image: 'b', objects: [] }]));
    await expectReject(loadCaptions(bad2, { format: 'iiw' }), 'CORRUPT_FILE', `${bad2}:2: no description`);
  });

  test('detection from content; undetectable and empty files', async () => {
    const noExt = tmp.write('d/pairsfile', jsonl([{ anchor: 'a', positive: 'b' }]));
    expect((await loadCaptions(noExt)).format).toBe('pairs');
    const cocoOneLine = tmp.write('d/cocofile', JSON.stringify({ images: [{ id: 1 }], annotations: [{ image_id: 1, caption: 'c' }] }));
    expect((await loadCaptions(cocoOneLine)).format).toBe('coco');
    const tsv = tmp.write('d/tsvfile', 'a.jpg\tcap\n');
    expect((await loadCaptions(tsv)).format).toBe('flickr8k');
    const weird = tmp.write('d/weird.jsonl', jsonl([{ text: 'x' }]));
    await expectReject(loadCaptions(weird), 'CORRUPT_FILE', `${weird}:1: cannot tell the format`);
    const empty = tmp.write('d/empty.jsonl', '\n\n');
    await expectReject(loadCaptions(empty, { format: 'captions' }), 'CORRUPT_FILE', 'no records');
    await expectReject(loadCaptions(tmp.dir + '/d'), 'IO_ERROR', 'a directory with none of');
    await expectReject(loadCaptions(tsv, { format: 'yaml' as 'coco' }), 'INVALID_ARGUMENT', 'format must be one of');
  });
});

describe('sentence splitter', () => {
  test.each([
    ['Dr. Who met Mr. Smith. They talked.', ['Dr. Who met Mr. Smith.', 'They talked.']],
    ['It is 3.5 m tall, i.e. huge. Next one!', ['It is 3.5 m tall, i.e. huge.', 'Next one!']],
    ['Fruit, e.g. Apples and pears. Done', ['Fruit, e.g. Apples and pears.', 'Done']],
    ['He said "Stop." Then he left.', ['He said "Stop."', 'Then he left.']],
    ['Made in the U.S.A. by J. R. R. Tolkien. End.', ['Made in the U.S.A. by J. R. R. Tolkien.', 'End.']],
    ['Wait... What? Yes.', ['Wait...', 'What?', 'Yes.']],
    ['lower. case continues. Upper ends', ['lower. case continues.', 'Upper ends']],
    ['no terminator at all', ['no terminator at all']],
    ['', []],
  ])('%j', (text, want) => {
    expect(splitSentences(text)).toEqual(want);
  });
  test('firstSentence of the whole text when it has one sentence', () => {
    expect(firstSentence('  A cat.  ')).toBe('A cat.');
  });
});

describe('real data (../shared/data)', () => {
  const token = realFile('flickr8k/Flickr8k.token.txt', 'captions.test.ts');
  const tsv = realFile('flickr8k_images_1k/captions.tsv', 'captions.test.ts');
  const docci = realFile('imageinwords/DOCCI_Test/data.jsonl', 'captions.test.ts');
  const iiw400 = realFile('imageinwords/IIW-400/data.jsonl', 'captions.test.ts');
  const countSplits = (ds: CaptionDataset): Record<string, number> => {
    const c: Record<string, number> = {};
    for (const im of ds.images) c[im.split ?? 'none'] = (c[im.split ?? 'none'] ?? 0) + 1;
    return c;
  };

  (token ? test : test.skip)('Flickr8k token file: 8092 images x 5 captions, 6000/1000/1000 split, the glitched key handled', async () => {
    const ds = await loadCaptions(token!);
    expect(ds.images.length).toBe(8092);
    expect(ds.images.every((im) => im.captions.length === 5)).toBe(true);
    expect(countSplits(ds)).toEqual({ train: 6000, dev: 1000, test: 1000, none: 92 });
    const glitched = ds.images.find((im) => im.id === '2258277193_586949ec62.jpg')!;
    expect(glitched.captions[0]).toBe('people waiting for the subway');
    expect(ds.images.some((im) => im.id.includes('.jpg.'))).toBe(false);
    for (const split of ['train', 'dev', 'test'] as const) {
      const s = await loadCaptions(token!, { split });
      expect(s.images.length).toBe(split === 'train' ? 6000 : 1000);
      expect(s.images.every((im) => im.split === split && im.captions.length === 5)).toBe(true);
    }
  });

  (tsv ? test : test.skip)('flickr8k_images_1k captions.tsv: 1000 images x 5, 753/113/125 + 9 in no split', async () => {
    const ds = await loadCaptions(tsv!);
    expect(ds.format).toBe('flickr8k');
    expect(ds.images.length).toBe(1000);
    expect(ds.images.every((im) => im.captions.length === 5)).toBe(true);
    expect(countSplits(ds)).toEqual({ train: 753, dev: 113, test: 125, none: 9 });
  });

  (docci ? test : test.skip)('ImageInWords DOCCI_Test: 100 images, short + DOCCI + IIW', async () => {
    const ds = await loadCaptions(docci!);
    expect(ds.format).toBe('iiw');
    expect(ds.images.length).toBe(100);
    for (const im of ds.images) {
      expect(im.kinds).toEqual(['short', 'long', 'long']);
      expect(im.captions[2].startsWith(im.captions[0])).toBe(true); // the short is the IIW text's first sentence
      expect(im.captions[0].length).toBeLessThan(im.captions[2].length);
      expect(im.captions[0]).toMatch(/[.!?]["'\u201d]?$/);
    }
  });

  (iiw400 ? test : test.skip)('ImageInWords IIW-400: 400 images, IIW-P5B on 100 of them', async () => {
    const ds = await loadCaptions(iiw400!);
    expect(ds.images.length).toBe(400);
    expect(new Set(ds.images.map((im) => im.id)).size).toBe(400);
    const n3 = ds.images.filter((im) => im.captions.length === 3).length;
    expect(n3).toBe(100);
    expect(ds.images.every((im) => im.kinds![0] === 'short' && im.captions[1].startsWith(im.captions[0]))).toBe(true);
  });
});
