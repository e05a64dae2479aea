// flickr8k.ts: the Flickr8k caption files: the token file (`IMAGE.jpg#N<TAB>caption`, also
// its lemmatised twin) and the `captions.tsv` of flickr8k_images_1k (`IMAGE.jpg<TAB>caption`),
// with the split files `Flickr_8k.{train,dev,test}Images.txt` read from the same folder.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { corrupt, isText, readText, splitLines } from './files';
import { CaptionDataset, CaptionImage, CaptionSplit, LoadCaptionsOptions } from './types';
import { selectSplit } from './select';

/** The split file names of the official Flickr8k text release. */
export const FLICKR8K_SPLIT_FILES: Readonly<Record<CaptionSplit, string>> = {
  train: 'Flickr_8k.trainImages.txt',
  dev: 'Flickr_8k.devImages.txt',
  test: 'Flickr_8k.testImages.txt',
};

// The official token file keys one caption `2258277193_586949ec62.jpg.1#0`; the image's
// other four captions are keyed `2258277193_586949ec62.jpg#1..4`. A trailing `.N` after an
// image extension is therefore stripped, which restores 5 captions for that image.
const GLITCH = /^(.+\.(?:jpe?g|png))\.\d+$/i;

/** Normalises an image key of the token file (see the upstream glitch above). */
export function flickrImageName(key: string): string {
  const m = GLITCH.exec(key);
  return m ? m[1] : key;
}

/** Reads the split files beside `file`: image name -> split (absent files are skipped). */
async function readSplits(file: string, required: CaptionSplit | undefined): Promise<Map<string, CaptionSplit> | null> {
  const dir = path.dirname(file);
  const where = new Map<string, { split: CaptionSplit; at: string }>();
  let found = false;
  for (const split of ['train', 'dev', 'test'] as CaptionSplit[]) {
    const splitFile = path.join(dir, FLICKR8K_SPLIT_FILES[split]);
    if (!fs.existsSync(splitFile)) {
      if (split === required)
        fail('IO_ERROR', `${file}: split '${split}' requested but its split file ${splitFile} does not exist`);
      continue;
    }
    found = true;
    const lines = splitLines(await readText(splitFile, `Flickr8k ${split} split`));
    lines.forEach((raw, i) => {
      const name = raw.trim();
      if (!name) return;
      if (/\s/.test(name)) corrupt(splitFile, i + 1, `expected one image file name, got ${JSON.stringify(name)}`);
      const prev = where.get(name);
      if (prev && prev.split !== split)
        corrupt(splitFile, i + 1, `${name} is also in the ${prev.split} split (${prev.at})`);
      where.set(name, { split, at: `${splitFile}:${i + 1}` });
    });
  }
  if (!found) return null;
  return new Map([...where].map(([k, v]) => [k, v.split]));
}

/**
 * Reads a Flickr8k caption file: `Flickr8k.token.txt` (`IMAGE.jpg#N<TAB>caption`) or a
 * `captions.tsv` (`IMAGE.jpg<TAB>caption`). Captions are ordered by N where given (source
 * order otherwise); images keep the order of their first caption. Splits come from the
 * split files in the same folder when present.
 */
export async function loadFlickr8k(file: string, options: LoadCaptionsOptions = {}): Promise<CaptionDataset> {
  const text = await readText(file, 'Flickr8k captions');
  const byName = new Map<string, { captions: { n: number; line: number; text: string }[] }>();
  splitLines(text).forEach((line, i) => {
    const lineNo = i + 1;
    if (line.trim() === '') return;
    const tab = line.indexOf('\t');
    if (tab < 0) corrupt(file, lineNo, 'expected IMAGE<TAB>caption (no tab)');
    const key = line.slice(0, tab).trim();
    const caption = line.slice(tab + 1).trim();
    const m = /^(.*)#(\d+)$/.exec(key);
    const name = flickrImageName(m ? m[1] : key);
    if (!name || /\s/.test(name)) corrupt(file, lineNo, `bad image key ${JSON.stringify(key)}`);
    if (!isText(caption)) corrupt(file, lineNo, `empty caption for ${name}`);
    let entry = byName.get(name);
    if (!entry) byName.set(name, (entry = { captions: [] }));
    const n = m ? Number(m[2]) : entry.captions.length;
    const dup = m ? entry.captions.find((c) => c.n === n) : undefined;
    if (dup) corrupt(file, lineNo, `${name}#${n} is given twice (also at line ${dup.line})`);
    entry.captions.push({ n, line: lineNo, text: caption });
  });
  if (byName.size === 0) corrupt(file, null, 'no captions');
  const splits = await readSplits(file, options.split);
  const images: CaptionImage[] = [];
  for (const [name, entry] of byName) {
    const img: CaptionImage = { id: name, captions: entry.captions.sort((a, b) => a.n - b.n).map((c) => c.text) };
    const split = splits?.get(name);
    if (split) img.split = split;
    images.push(img);
  }
  return selectSplit({ format: 'flickr8k', source: file, images }, options.split);
}
