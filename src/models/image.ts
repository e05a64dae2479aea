// image.ts: CLIP image preprocessing, as Hugging Face's (slow) CLIPImageProcessor does it:
// convert to RGB, resize the shorter side to `size` (Pillow's bicubic, reimplemented here
// bit for bit; libvips' as an option), centre crop size x size, scale to [0, 1], normalise
// per channel in float32; CHW float32. Decoding and colour conversion are sharp's
// (libvips), loaded lazily (on the first call), so the rest of the package works without it.
import * as fs from 'fs';
import type { Sharp, SharpOptions } from 'sharp';
import { DType, checkDType } from '../dtype';
import { Llm2ClipError, fail } from '../errors';
import { tensor } from '../creation';
import { Tensor } from '../tensor';

/** OpenAI CLIP's per-channel mean (RGB), as CLIPImageProcessor's image_mean. */
export const CLIP_IMAGE_MEAN: readonly number[] = [0.48145466, 0.4578275, 0.40821073];
/** OpenAI CLIP's per-channel standard deviation (RGB), as CLIPImageProcessor's image_std. */
export const CLIP_IMAGE_STD: readonly number[] = [0.26862954, 0.26130258, 0.27577711];

/** Options of {@link preprocessImage}. */
export interface PreprocessOptions {
  /** Output side in pixels (default 224; a model's config.image_size). */
  size?: number;
  /** Per-channel mean subtracted after scaling to [0, 1] (default {@link CLIP_IMAGE_MEAN}). */
  mean?: readonly number[];
  /** Per-channel standard deviation divided by (default {@link CLIP_IMAGE_STD}). */
  std?: readonly number[];
  /**
   * The resize: 'pil' (default) reproduces Pillow's BICUBIC resize, which transformers'
   * CLIPImageProcessor uses, bit for bit; 'sharp' uses libvips' bicubic (faster on large
   * photos, within a few 8-bit levels of it).
   */
  resample?: 'pil' | 'sharp';
}

/** Options of {@link loadImages}. */
export interface LoadImagesOptions extends PreprocessOptions {
  /** Tensor dtype (default float32). */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /** How many images are decoded at once (default 8). */
  concurrency?: number;
}

/** sharp's default export. */
export type SharpFactory = (input?: Buffer | string | SharpOptions, options?: SharpOptions) => Sharp;
let sharpLib: SharpFactory | null = null;

/** The sharp module, loaded once; INTERNAL naming `what` needs it when it does not load. */
export function loadSharp(what = 'image preprocessing'): SharpFactory {
  if (sharpLib) return sharpLib;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const m = require('sharp') as SharpFactory & { default?: SharpFactory };
    sharpLib = m.default ?? m;
  } catch (e) {
    fail('INTERNAL', `${what} needs the 'sharp' package, which did not load: ${(e as Error).message}`);
  }
  return sharpLib;
}

interface Checked {
  size: number;
  mean: number[];
  std: number[];
  resample: 'pil' | 'sharp';
}

function checkOptions(options: PreprocessOptions | undefined, what: string): Checked {
  if (options !== undefined && (options === null || typeof options !== 'object'))
    fail('INVALID_ARGUMENT', `${what}: options must be an object`);
  const o = options ?? {};
  const size = o.size ?? 224;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1 || size > 16384)
    fail('INVALID_ARGUMENT', `${what}: options.size must be an integer in [1, 16384] (got ${String(o.size)})`);
  const vec = (v: readonly number[] | undefined, dflt: readonly number[], name: string, nonZero: boolean): number[] => {
    const a = v ?? dflt;
    if (!Array.isArray(a) || a.length !== 3 || a.some((x) => typeof x !== 'number' || !Number.isFinite(x) || (nonZero && x === 0)))
      fail('INVALID_ARGUMENT', `${what}: options.${name} must be 3 finite numbers${nonZero ? ', none zero' : ''} (got ${JSON.stringify(v)})`);
    return [...a];
  };
  const resample = o.resample ?? 'pil';
  if (resample !== 'pil' && resample !== 'sharp') fail('INVALID_ARGUMENT', `${what}: options.resample must be 'pil' or 'sharp' (got ${JSON.stringify(o.resample)})`);
  return { size, mean: vec(o.mean, CLIP_IMAGE_MEAN, 'mean', false), std: vec(o.std, CLIP_IMAGE_STD, 'std', true), resample };
}

function label(input: string | Buffer): string {
  return typeof input === 'string' ? JSON.stringify(input) : `<buffer of ${input.length} bytes>`;
}

/**
 * The resized (shorter side = size, longer side = floor(size · long / short), as
 * transformers' get_resize_output_image_size) and centre-cropped geometry of a
 * width x height image.
 */
export function clipResizeGeometry(width: number, height: number, size: number): { width: number; height: number; left: number; top: number } {
  const short = Math.min(width, height), long = Math.max(width, height);
  const newLong = Math.max(size, Math.floor((size * long) / short));
  const w = width <= height ? size : newLong;
  const h = width <= height ? newLong : size;
  return { width: w, height: h, left: Math.floor((w - size) / 2), top: Math.floor((h - size) / 2) };
}

async function readInput(input: string | Buffer, what: string): Promise<Buffer> {
  if (Buffer.isBuffer(input)) return input;
  if (typeof input !== 'string' || input.length === 0) fail('INVALID_ARGUMENT', `${what}: input must be a file path or a Buffer`);
  try {
    return await fs.promises.readFile(input);
  } catch (e) {
    throw new Llm2ClipError('IO_ERROR', `${what}: cannot read image file ${label(input)}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------- PIL's bicubic resize

const PRECISION_BITS = 22; // Pillow's Resample.c: 32 - 8 - 2
const ONE = 2 ** PRECISION_BITS;

/** Pillow's bicubic kernel (a = -0.5, support 2). */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output index, the first
 * input index, the tap count and the fixed-point (22-bit) weights of the antialiased
 * bicubic filter (support scaled by the downscale factor, pixel centres aligned).
 */
function coeffs(inSize: number, outSize: number): { ksize: number; bounds: Int32Array; kk: Float64Array } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** Pillow's clip8: the fixed-point sum (with its rounding half already added) to 0..255. */
function clip8(v: number): number {
  if (v <= 0) return 0;
  const r = Math.floor(v / ONE);
  return r > 255 ? 255 : r;
}

/**
 * RGB (HWC uint8) resized to outW x outH exactly as Pillow's Image.resize(..., BICUBIC)
 * (what transformers' CLIPImageProcessor runs): a horizontal pass over the rows the
 * vertical pass reads, rounded to uint8, then a vertical pass; a pass whose size does not
 * change is skipped. Integer arithmetic as Pillow's (products stay below 2^53, so exact).
 */
export function resizeBicubicPil(src: Uint8Array, width: number, height: number, outW: number, outH: number): Uint8Array {
  const C = 3;
  let img = src, w = width, h = height;
  const vert = outH !== height ? coeffs(height, outH) : null;
  if (outW !== width) {
    const { ksize, bounds, kk } = coeffs(width, outW);
    // Only the rows the vertical pass reads.
    const y0 = vert ? vert.bounds[0] : 0;
    const y1 = vert ? vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1] : height;
    const rows = y1 - y0;
    const tmp = new Uint8Array(rows * outW * C);
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + y0) * width * C, rowOut = y * outW * C;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k0 = xx * ksize;
        let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
        for (let x = 0; x < xmax; x++) {
          const k = kk[k0 + x], p = rowIn + (x + xmin) * C;
          s0 += img[p] * k;
          s1 += img[p + 1] * k;
          s2 += img[p + 2] * k;
        }
        tmp[rowOut + xx * C] = clip8(s0);
        tmp[rowOut + xx * C + 1] = clip8(s1);
        tmp[rowOut + xx * C + 2] = clip8(s2);
      }
    }
    if (vert) for (let i = 0; i < outH; i++) vert.bounds[i * 2] -= y0;
    img = tmp;
    w = outW;
    h = rows;
  }
  if (!vert) return img === src ? Uint8Array.from(src) : img;
  const { ksize, bounds, kk } = vert;
  const out = new Uint8Array(outH * w * C);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], k0 = yy * ksize;
    for (let xc = 0; xc < w * C; xc++) {
      let s = ONE / 2;
      for (let y = 0; y < ymax; y++) s += img[(y + ymin) * w * C + xc] * kk[k0 + y];
      out[yy * w * C + xc] = clip8(s);
    }
  }
  void h;
  return out;
}

/** Decoded 8-bit RGB pixels, resized and cropped (HWC). */
async function rgbCrop(bytes: Buffer, name: string, o: Checked, what: string): Promise<Uint8Array> {
  const sharp = loadSharp();
  const size = o.size;
  try {
    // Decode and convert to 8-bit sRGB, alpha dropped (not composited), as PIL's
    // image.convert('RGB'): greyscale is replicated, CMYK and other spaces converted. No
    // EXIF auto-rotation (transformers does none either).
    const dec = await sharp(bytes, { failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = dec.info;
    if (channels !== 3 || dec.data.length !== width * height * 3)
      fail('CORRUPT_FILE', `${what}: image ${name} decoded to ${width}x${height}x${channels}, expected 3 channels of 8 bits after RGB conversion`);
    const g = clipResizeGeometry(width, height, size);
    if (o.resample === 'sharp') {
      const out = await sharp(dec.data, { raw: { width, height, channels: 3 } })
        .resize(g.width, g.height, { kernel: 'cubic', fit: 'fill' })
        .extract({ left: g.left, top: g.top, width: size, height: size })
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      if (out.info.width !== size || out.info.height !== size || out.info.channels !== 3 || out.data.length !== size * size * 3)
        fail('INTERNAL', `${what}: image ${name}: sharp returned ${out.info.width}x${out.info.height}x${out.info.channels}, expected ${size}x${size}x3`);
      return out.data;
    }
    const resized = resizeBicubicPil(dec.data, width, height, g.width, g.height);
    const crop = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      const from = ((g.top + y) * g.width + g.left) * 3;
      crop.set(resized.subarray(from, from + size * 3), y * size * 3);
    }
    return crop;
  } catch (e) {
    if (e instanceof Llm2ClipError) throw e;
    throw new Llm2ClipError('CORRUPT_FILE', `${what}: cannot decode image ${name}: ${(e as Error).message}`);
  }
}

/**
 * HWC uint8 -> normalised CHW float32 written into out at offset, with transformers'
 * float32 arithmetic: x = f32(v · (1/255)), then f32(f32(x − f32(mean)) / f32(std)).
 */
function normalise(rgb: Uint8Array, o: Checked, out: Float32Array, offset: number): void {
  const n = o.size * o.size;
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = f(o.mean[c]), s = f(o.std[c]), base = offset + c * n;
    for (let i = 0; i < n; i++) out[base + i] = f(f(rgb[i * 3 + c] * (1 / 255)) - m) / s;
  }
}

/**
 * One image (a file path or encoded bytes: JPEG, PNG, WebP, TIFF, GIF, ...) preprocessed
 * as OpenAI CLIP / transformers' CLIPImageProcessor: RGB (alpha dropped, greyscale and
 * CMYK converted; no EXIF rotation), shorter side resized to `size` (the longer to
 * floor(size · long / short)) with Pillow's antialiased bicubic filter, centre crop
 * size x size, then x = v / 255 and (x − mean[c]) / std[c] in transformers' float32
 * arithmetic. Returns CHW float32 [3, size, size]: the same values as
 * CLIPImageProcessor's pixel_values when the decoders agree (libjpeg-turbo in both).
 *
 * Errors: IO_ERROR for an unreadable file, CORRUPT_FILE for bytes that do not decode,
 * naming the file.
 */
export async function preprocessImage(input: string | Buffer, options?: PreprocessOptions): Promise<Float32Array> {
  const what = 'preprocessImage';
  const o = checkOptions(options, what);
  const bytes = await readInput(input, what);
  const rgb = await rgbCrop(bytes, label(input), o, what);
  const out = new Float32Array(3 * o.size * o.size);
  normalise(rgb, o, out, 0);
  return out;
}

/**
 * Images (paths or encoded bytes) preprocessed as {@link preprocessImage} into one tensor
 * [B, 3, size, size] (float32 unless options.dtype; on options.device), decoded
 * concurrently (at most options.concurrency at a time, default 8). The first failing image
 * rejects the promise with its error (IO_ERROR / CORRUPT_FILE naming the file).
 */
export async function loadImages(inputs: readonly (string | Buffer)[], options: LoadImagesOptions = {}): Promise<Tensor> {
  const what = 'loadImages';
  if (!Array.isArray(inputs) || inputs.length === 0) fail('INVALID_ARGUMENT', `${what}: inputs must be a non-empty array of paths or Buffers`);
  const o = checkOptions(options, what);
  const dtype = checkDType(options.dtype ?? 'float32', `${what}(options.dtype)`);
  if (dtype === 'int32') fail('DTYPE_MISMATCH', `${what}: options.dtype must be a float dtype`);
  const conc = options.concurrency ?? 8;
  if (typeof conc !== 'number' || !Number.isSafeInteger(conc) || conc < 1)
    fail('INVALID_ARGUMENT', `${what}: options.concurrency must be a positive integer (got ${String(options.concurrency)})`);
  const per = 3 * o.size * o.size;
  const out = new Float32Array(inputs.length * per);
  let next = 0;
  let failed: unknown = null;
  const worker = async (): Promise<void> => {
    while (failed === null && next < inputs.length) {
      const i = next++;
      try {
        const input = inputs[i];
        const bytes = await readInput(input, what);
        const rgb = await rgbCrop(bytes, label(input), o, what);
        normalise(rgb, o, out, i * per);
      } catch (e) {
        if (failed === null) failed = e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, inputs.length) }, worker));
  if (failed !== null) throw failed;
  return tensor(out, [inputs.length, 3, o.size, o.size], { dtype, device: options.device });
}
