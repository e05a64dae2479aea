// clip-presets.ts: sizes of small from-scratch CLIP vision towers (ViTs) that train on CPUs.
import { fail } from '../errors';
import { CLIP_VISION_DEFAULTS, ClipVisionConfig } from './clip';

/** Names of the {@link clipVisionPreset} sizes. */
export type ClipVisionPresetName = 'tiny' | 'small';

/** Options of {@link clipVisionPreset}. */
export interface ClipVisionPresetOptions {
  /** Input side in pixels (default: the preset's); must be a multiple of the preset's patch size. */
  imageSize?: number;
  /** Output width of visual_projection (the joint space; required). */
  projectionDim: number;
}

const PRESETS: Record<ClipVisionPresetName, Pick<ClipVisionConfig, 'imageSize' | 'patchSize' | 'hiddenSize' | 'numHiddenLayers' | 'numAttentionHeads' | 'intermediateSize'>> = {
  // 64 patch tokens + CLS, ~1.8M parameters.
  tiny: { imageSize: 64, patchSize: 8, hiddenSize: 192, numHiddenLayers: 4, numAttentionHeads: 3, intermediateSize: 768 },
  // 49 patch tokens + CLS, ~4.8M parameters.
  small: { imageSize: 112, patchSize: 16, hiddenSize: 256, numHiddenLayers: 6, numAttentionHeads: 4, intermediateSize: 1024 },
};

/**
 * A full ClipVisionConfig of a small from-scratch ViT for CPU training:
 * - 'tiny': 64 px, patch 8 (64 patches), hidden 192, 4 layers, 3 heads, MLP 768;
 * - 'small': 112 px, patch 16 (49 patches), hidden 256, 6 layers, 4 heads, MLP 1024.
 * quick_gelu, LayerNorm eps 1e-5, initializer_range 0.02 (Hugging Face's defaults).
 * imageSize overrides the preset's side (same patch size; more patches cost more).
 * Throws INVALID_ARGUMENT for an unknown name or a bad option.
 */
export function clipVisionPreset(name: ClipVisionPresetName, options: ClipVisionPresetOptions): ClipVisionConfig {
  if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(PRESETS, name))
    fail('INVALID_ARGUMENT', `clipVisionPreset(name): name must be 'tiny' or 'small' (got ${JSON.stringify(name)})`);
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', 'clipVisionPreset(name, options): options with projectionDim are required');
  const p = PRESETS[name];
  const { projectionDim } = options;
  if (typeof projectionDim !== 'number' || !Number.isSafeInteger(projectionDim) || projectionDim < 1)
    fail('INVALID_ARGUMENT', `clipVisionPreset: options.projectionDim must be a positive integer (got ${String(projectionDim)})`);
  const imageSize = options.imageSize ?? p.imageSize;
  if (typeof imageSize !== 'number' || !Number.isSafeInteger(imageSize) || imageSize < p.patchSize || imageSize % p.patchSize !== 0)
    fail('INVALID_ARGUMENT', `clipVisionPreset: options.imageSize must be a positive multiple of the '${name}' patch size ${p.patchSize} (got ${String(imageSize)})`);
  return { ...CLIP_VISION_DEFAULTS, ...p, imageSize, projectionDim, hiddenAct: 'quick_gelu', layerNormEps: 1e-5, initializerRange: 0.02, initializerFactor: 1 };
}
