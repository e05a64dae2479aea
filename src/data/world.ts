// world.ts: a procedural world for the demo: seeded scenes of coloured shapes on a 3 x 3
// grid, rendered to RGB in TypeScript (2 x 2 supersampled) and written as PNG with sharp,
// each with a short caption (its main object), a long compositional one (every object with
// its size and place, and a relation) and a paraphrase of the long one in other words and
// another order. Written as an image folder + a captions JSONL with train/test splits,
// caption pairs for ccFinetune, a text corpus and class folders for zero-shot. Colour names
// all start with a consonant, so the prompt 'a {class}' reads right for every class.
import * as fs from 'fs';
import * as path from 'path';
import { loadSharp } from '../models/image';
import { fail } from '../errors';
import { Rng } from './rng';

/** The shapes of the world. */
export type WorldShape = 'circle' | 'square' | 'triangle' | 'star' | 'diamond' | 'cross';
/** Object sizes. */
export type WorldSize = 'small' | 'large';

/** The shapes, in label order. */
export const WORLD_SHAPES: readonly WorldShape[] = ['circle', 'square', 'triangle', 'star', 'diamond', 'cross'];
/** The colours and their RGB values, in label order. */
export const WORLD_COLOURS: readonly { name: string; rgb: readonly [number, number, number] }[] = [
  { name: 'red', rgb: [220, 30, 30] },
  { name: 'green', rgb: [30, 170, 50] },
  { name: 'blue', rgb: [30, 70, 230] },
  { name: 'yellow', rgb: [240, 220, 30] },
  { name: 'purple', rgb: [150, 40, 190] },
  { name: 'pink', rgb: [250, 130, 190] },
  { name: 'white', rgb: [250, 250, 250] },
  { name: 'black', rgb: [10, 10, 10] },
];
/** The background colour (mid grey). */
export const WORLD_BACKGROUND: readonly [number, number, number] = [120, 120, 120];

const ROWS = ['top', 'middle', 'bottom'] as const;
const COLS = ['left', 'centre', 'right'] as const;
// Place phrases by [row][col]: the long captions' words, and the paraphrases' other words.
const PLACE = [
  ['at the top left', 'at the top', 'at the top right'],
  ['on the left', 'in the centre', 'on the right'],
  ['at the bottom left', 'at the bottom', 'at the bottom right'],
];
const PLACE_ALT = [
  ['in the upper left corner', 'along the upper edge', 'in the upper right corner'],
  ['on the left side', 'in the middle', 'on the right side'],
  ['in the lower left corner', 'along the lower edge', 'in the lower right corner'],
];
const SIZE_ALT: Record<WorldSize, string> = { small: 'little', large: 'big' };
const COUNT = ['', 'one', 'two', 'three'];

/** One object of a scene. Coordinates are fractions of the image side (0..1). */
export interface WorldObject {
  shape: WorldShape;
  colour: string;
  size: WorldSize;
  /** Grid cell: row 0..2 (top, middle, bottom), col 0..2 (left, centre, right). */
  row: number;
  col: number;
  /** Centre, as fractions of the image side. */
  x: number;
  y: number;
  /** Radius, as a fraction of the image side. */
  radius: number;
}

/** A scene and its three captions. */
export interface WorldScene {
  /** 1 to 3 objects in distinct grid cells with distinct colour+shape; objects[0] is the main one (always large). */
  objects: WorldObject[];
  /** Names the main object only: "a red circle". */
  short: string;
  /** Every object with its size and place, then a relation: the information the short caption lacks. */
  long: string;
  /** The long caption in other words (big/little, upper/lower, corner, ...), objects in reverse order, relation inverted. */
  paraphrase: string;
}

/** Options of {@link makeScene}. */
export interface MakeSceneOptions {
  /** Fewest objects (default 1). */
  minObjects?: number;
  /** Most objects (default 3; at most 3). */
  maxObjects?: number;
  /** Force the main object's shape / colour (class images). */
  shape?: WorldShape;
  colour?: string;
}

function relation(a: WorldObject, b: WorldObject, rng: Rng): { rel: string; inv: string } {
  const dx = b.col - a.col, dy = b.row - a.row;
  const horizontal = dx !== 0 && (dy === 0 || Math.abs(dx) > Math.abs(dy) || (Math.abs(dx) === Math.abs(dy) && rng.below(2) === 0));
  if (horizontal) return dx > 0 ? { rel: 'to the left of', inv: 'to the right of' } : { rel: 'to the right of', inv: 'to the left of' };
  return dy > 0 ? { rel: 'above', inv: 'below' } : { rel: 'below', inv: 'above' };
}

const nameOf = (o: WorldObject): string => `${o.colour} ${o.shape}`;
/** 'a' or 'an' before a word. */
const article = (word: string): string => (/^[aeiou]/.test(word) ? 'an' : 'a');

/** The short, long and paraphrased captions of a list of objects (the relation's axis may draw from rng). */
export function describeObjects(objects: WorldObject[], rng: Rng): { short: string; long: string; paraphrase: string } {
  if (objects.length < 1 || objects.length > 3) fail('INVALID_ARGUMENT', `describeObjects: 1 to 3 objects are needed, got ${objects.length}`);
  const main = objects[0];
  const short = `${article(main.colour)} ${nameOf(main)}`;
  const parts = objects.map((o) => `a ${o.size} ${nameOf(o)} ${PLACE[o.row][o.col]}`);
  const alts = [...objects].reverse().map((o) => `a ${SIZE_ALT[o.size]} ${nameOf(o)} ${PLACE_ALT[o.row][o.col]}`);
  let long: string, paraphrase: string;
  if (objects.length === 1) {
    long = `${parts[0]} on a grey background.`;
    paraphrase = `a single ${SIZE_ALT[main.size]} ${nameOf(main)} ${PLACE_ALT[main.row][main.col]}, nothing else.`;
  } else {
    const { rel, inv } = relation(objects[0], objects[1], rng);
    const list = (xs: string[]): string => (xs.length === 2 ? `${xs[0]} and ${xs[1]}` : `${xs[0]}, ${xs[1]} and ${xs[2]}`);
    long = `${list(parts)}. the ${nameOf(objects[0])} is ${rel} the ${nameOf(objects[1])}.`;
    paraphrase = `${COUNT[objects.length]} shapes: ${list(alts)}. the ${nameOf(objects[1])} is ${inv} the ${nameOf(objects[0])}.`;
  }
  return { short, long, paraphrase };
}

/**
 * A random scene: 1 to 3 objects in distinct cells of a 3 x 3 grid, no two alike in colour
 * and shape; the main object (objects[0]) is large, the others small or large. Centres are
 * jittered by up to 1/32 of the side, so objects never cover another's centre.
 */
export function makeScene(rng: Rng, options: MakeSceneOptions = {}): WorldScene {
  const lo = options.minObjects ?? 1, hi = options.maxObjects ?? 3;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 3 || lo > hi)
    fail('INVALID_ARGUMENT', `makeScene: minObjects/maxObjects must satisfy 1 <= min <= max <= 3 (got ${lo}, ${hi})`);
  if (options.shape !== undefined && !WORLD_SHAPES.includes(options.shape)) fail('INVALID_ARGUMENT', `makeScene: unknown shape ${JSON.stringify(options.shape)}`);
  if (options.colour !== undefined && !WORLD_COLOURS.some((c) => c.name === options.colour)) fail('INVALID_ARGUMENT', `makeScene: unknown colour ${JSON.stringify(options.colour)}`);
  const n = lo + rng.below(hi - lo + 1);
  const cells = rng.shuffle(Array.from({ length: 9 }, (_, i) => i)).slice(0, n);
  const used = new Set<string>();
  const objects: WorldObject[] = cells.map((cell, k) => {
    let shape: WorldShape, colour: string;
    do {
      shape = k === 0 && options.shape ? options.shape : WORLD_SHAPES[rng.below(WORLD_SHAPES.length)];
      colour = k === 0 && options.colour ? options.colour : WORLD_COLOURS[rng.below(WORLD_COLOURS.length)].name;
    } while (used.has(`${colour} ${shape}`));
    used.add(`${colour} ${shape}`);
    const size: WorldSize = k === 0 || rng.below(2) === 0 ? 'large' : 'small';
    const row = Math.floor(cell / 3), col = cell % 3;
    const jitter = (): number => (rng.float() * 2 - 1) / 32;
    const radius = size === 'large' ? 0.13 + rng.float() * 0.02 : 0.075 + rng.float() * 0.015;
    return { shape, colour, size, row, col, x: (col + 0.5) / 3 + jitter(), y: (row + 0.5) / 3 + jitter(), radius };
  });
  return { objects, ...describeObjects(objects, rng) };
}

// Unit shapes as polygons (x right, y down; radius 1).
function starPolygon(): number[][] {
  const pts: number[][] = [];
  for (let i = 0; i < 10; i++) {
    const a = -Math.PI / 2 + (i * Math.PI) / 5, r = i % 2 === 0 ? 1 : 0.45;
    pts.push([r * Math.cos(a), r * Math.sin(a)]);
  }
  return pts;
}
const POLYGONS: Partial<Record<WorldShape, number[][]>> = {
  triangle: [[0, -1], [0.95, 0.7], [-0.95, 0.7]],
  star: starPolygon(),
  diamond: [[0, -1.05], [1.05, 0], [0, 1.05], [-1.05, 0]],
};

function inPolygon(p: number[][], x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = p.length - 1; i < p.length; j = i++) {
    const [xi, yi] = p[i], [xj, yj] = p[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Whether the unit shape covers (u, v), in units of the radius from the centre. */
export function shapeContains(shape: WorldShape, u: number, v: number): boolean {
  switch (shape) {
    case 'circle':
      return u * u + v * v <= 1;
    case 'square':
      return Math.abs(u) <= 0.85 && Math.abs(v) <= 0.85;
    case 'cross':
      return (Math.abs(u) <= 0.32 && Math.abs(v) <= 1) || (Math.abs(v) <= 0.32 && Math.abs(u) <= 1);
    default:
      return inPolygon(POLYGONS[shape]!, u, v);
  }
}

/** Renders a scene to RGB bytes [size, size, 3] (row-major), objects drawn in order, 2 x 2 supersampled. */
export function renderScene(scene: WorldScene, size: number): Uint8Array {
  if (!Number.isSafeInteger(size) || size < 8 || size > 4096) fail('INVALID_ARGUMENT', `renderScene: size must be an integer in [8, 4096], got ${size}`);
  const out = new Uint8Array(size * size * 3);
  const acc = new Float32Array(size * size * 3);
  for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) acc[i * 3 + c] = WORLD_BACKGROUND[c];
  const SUB = [0.25, 0.75];
  for (const o of scene.objects) {
    const rgb = WORLD_COLOURS.find((c) => c.name === o.colour)?.rgb;
    if (!rgb) fail('INVALID_ARGUMENT', `renderScene: unknown colour ${JSON.stringify(o.colour)}`);
    const cx = o.x * size, cy = o.y * size, r = o.radius * size;
    const x0 = Math.max(0, Math.floor(cx - 1.1 * r)), x1 = Math.min(size - 1, Math.ceil(cx + 1.1 * r));
    const y0 = Math.max(0, Math.floor(cy - 1.1 * r)), y1 = Math.min(size - 1, Math.ceil(cy + 1.1 * r));
    for (let py = y0; py <= y1; py++)
      for (let px = x0; px <= x1; px++) {
        let cover = 0;
        for (const sy of SUB) for (const sx of SUB) if (shapeContains(o.shape, (px + sx - cx) / r, (py + sy - cy) / r)) cover++;
        if (cover === 0) continue;
        const a = cover / 4, i = (py * size + px) * 3;
        for (let c = 0; c < 3; c++) acc[i + c] = acc[i + c] * (1 - a) + rgb[c] * a;
      }
  }
  for (let i = 0; i < acc.length; i++) out[i] = Math.round(acc[i]);
  return out;
}


/** Writes RGB bytes [size, size, 3] as a PNG file. */
export async function writePng(file: string, rgb: Uint8Array, size: number): Promise<void> {
  const sharp = loadSharp("writing the world's PNG files");
  try {
    await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width: size, height: size, channels: 3 } }).png().toFile(file);
  } catch (e) {
    fail('IO_ERROR', `cannot write ${file}: ${(e as Error).message}`);
  }
}

/** Options of {@link writeWorld}. */
export interface WriteWorldOptions {
  /** Training scenes (default 3000). */
  train?: number;
  /** Test scenes (default 500). */
  test?: number;
  /** Single-object images per colour+shape class for zero-shot (default 4). */
  perClass?: number;
  /** Image side in pixels (default 64). */
  imageSize?: number;
  /** Seed (default 0): the same seed writes the same files. */
  seed?: number;
}

/** What {@link writeWorld} wrote (also in DIR/world.json, without the scenes). */
export interface WorldDataset {
  dir: string;
  /** DIR/images: NNNNN.png. */
  images: string;
  /** DIR/captions.jsonl: {"image", "split", "caption" (short), "long_caption", "paraphrase"} per line. */
  captions: string;
  /** DIR/pairs.jsonl: {"anchor": long, "positive": paraphrase} of the training scenes (ccFinetune). */
  pairs: string;
  /** DIR/corpus.txt: every caption of the training scenes, one a line (tokenizer, MNTP). */
  corpus: string;
  /** DIR/classes/"COLOUR SHAPE"/NNN.png: single-object images (zero-shot). */
  classes: string;
  /** DIR/prompt.txt: the zero-shot prompt, "a {class}". */
  prompt: string;
  train: WorldScene[];
  test: WorldScene[];
  classNames: string[];
  imageSize: number;
  seed: number;
}

function count(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > 1_000_000) fail('INVALID_ARGUMENT', `writeWorld: options.${name} must be an integer in [${min}, 1000000], got ${String(v)}`);
  return v;
}

/** Runs fn over items, `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * The scenes of a seed: train scene i from stream (seed, 1, i), test scene i from (seed, 2,
 * i), so a smaller world is a prefix of a larger one. Pure; nothing is written.
 */
export function worldScenes(seed: number, train: number, test: number): { train: WorldScene[]; test: WorldScene[] } {
  if (!Number.isSafeInteger(seed) || seed < 0) fail('INVALID_ARGUMENT', `worldScenes: seed must be a non-negative safe integer, got ${String(seed)}`);
  return {
    train: Array.from({ length: train }, (_, i) => makeScene(new Rng(seed, 1, i))),
    test: Array.from({ length: test }, (_, i) => makeScene(new Rng(seed, 2, i))),
  };
}

/**
 * Generates the world into `dir` (created; files of the same names are overwritten): the
 * images, the captions JSONL (loadImageCaptions / loadCaptions read it: `caption` is the
 * short caption; `long_caption` and `paraphrase` ride along), pairs.jsonl (loadCaptions'
 * pairs format), corpus.txt, class folders and prompt.txt, and world.json describing it.
 */
export async function writeWorld(dir: string, options: WriteWorldOptions = {}): Promise<WorldDataset> {
  if (typeof dir !== 'string' || dir === '') fail('INVALID_ARGUMENT', 'writeWorld: dir must be a non-empty path');
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', 'writeWorld: options must be an object');
  const nTrain = count('train', options.train ?? 3000, 2);
  const nTest = count('test', options.test ?? 500, 2);
  const perClass = count('perClass', options.perClass ?? 4, 0);
  const size = count('imageSize', options.imageSize ?? 64, 16);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) fail('INVALID_ARGUMENT', `writeWorld: options.seed must be a non-negative safe integer, got ${String(seed)}`);
  const root = path.resolve(dir);
  const imagesDir = path.join(root, 'images'), classesDir = path.join(root, 'classes');
  try {
    fs.mkdirSync(imagesDir, { recursive: true });
    fs.mkdirSync(classesDir, { recursive: true });
  } catch (e) {
    fail('IO_ERROR', `writeWorld: cannot create ${root}: ${(e as Error).message}`);
  }
  const { train, test } = worldScenes(seed, nTrain, nTest);
  const all = [...train.map((s) => ({ s, split: 'train' })), ...test.map((s) => ({ s, split: 'test' }))];
  const name = (i: number): string => `${String(i).padStart(5, '0')}.png`;
  await pool(all, 8, ({ s }, i) => writePng(path.join(imagesDir, name(i)), renderScene(s, size), size));

  const classNames: string[] = [];
  const classJobs: { file: string; scene: WorldScene }[] = [];
  for (const c of WORLD_COLOURS)
    for (const shape of WORLD_SHAPES) {
      const cls = `${c.name} ${shape}`;
      classNames.push(cls);
      if (perClass === 0) continue;
      fs.mkdirSync(path.join(classesDir, cls), { recursive: true });
      for (let k = 0; k < perClass; k++)
        classJobs.push({ file: path.join(classesDir, cls, `${String(k).padStart(3, '0')}.png`), scene: makeScene(new Rng(seed, 3, classNames.length - 1, k), { minObjects: 1, maxObjects: 1, shape, colour: c.name }) });
    }
  await pool(classJobs, 8, (j) => writePng(j.file, renderScene(j.scene, size), size));

  const write = (file: string, text: string): string => {
    try {
      fs.writeFileSync(file, text);
    } catch (e) {
      fail('IO_ERROR', `writeWorld: cannot write ${file}: ${(e as Error).message}`);
    }
    return file;
  };
  const captions = write(path.join(root, 'captions.jsonl'), all.map(({ s, split }, i) => JSON.stringify({ image: name(i), split, caption: s.short, long_caption: s.long, paraphrase: s.paraphrase }) + '\n').join(''));
  const pairs = write(path.join(root, 'pairs.jsonl'), train.map((s) => JSON.stringify({ anchor: s.long, positive: s.paraphrase }) + '\n').join(''));
  const corpus = write(path.join(root, 'corpus.txt'), train.flatMap((s) => [s.short, s.long, s.paraphrase]).join('\n') + '\n');
  const prompt = write(path.join(root, 'prompt.txt'), 'a {class}\n');
  const info = { generator: 'llm2clip world', version: 1, seed, imageSize: size, train: nTrain, test: nTest, perClass, classes: classNames.length };
  write(path.join(root, 'world.json'), JSON.stringify(info, null, 1) + '\n');
  return { dir: root, images: imagesDir, captions, pairs, corpus, classes: classesDir, prompt, train, test, classNames, imageSize: size, seed };
}
