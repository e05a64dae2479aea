// select.ts: split selection shared by the caption loaders.
import { fail } from '../errors';
import { CaptionDataset, CaptionSplit } from './types';

const SPLITS: readonly CaptionSplit[] = ['train', 'dev', 'test'];

/** Validates a split option (undefined passes). */
export function checkSplit(split: unknown, what: string): CaptionSplit | undefined {
  if (split === undefined) return undefined;
  if (typeof split !== 'string' || !(SPLITS as readonly string[]).includes(split))
    fail('INVALID_ARGUMENT', `${what}: split must be one of ${SPLITS.join(', ')}, got ${JSON.stringify(split)}`);
  return split as CaptionSplit;
}

/**
 * Keeps the images of `split` (all when undefined). INVALID_ARGUMENT when the dataset
 * carries no split information or the split is empty.
 */
export function selectSplit(ds: CaptionDataset, split: CaptionSplit | undefined): CaptionDataset {
  if (split === undefined) return ds;
  if (!ds.images.some((im) => im.split !== undefined))
    fail('INVALID_ARGUMENT', `${ds.source}: split '${split}' requested but the ${ds.format} source has no split information`);
  const images = ds.images.filter((im) => im.split === split);
  if (images.length === 0) fail('INVALID_ARGUMENT', `${ds.source}: no image is in the '${split}' split`);
  return { ...ds, images };
}
