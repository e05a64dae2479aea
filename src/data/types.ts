// types.ts: the normalised caption dataset every caption source is read into.

/** A split of a dataset (Karpathy's "val" and "restval" map to "dev" and "train"). */
export type CaptionSplit = 'train' | 'dev' | 'test';

/** The caption file formats that {@link loadCaptions} reads. */
export type CaptionFormat = 'coco' | 'flickr8k' | 'pairs' | 'captions' | 'iiw';

/** Whether a caption is a short summary or a long, dense description (ImageInWords). */
export type CaptionKind = 'short' | 'long';

/** One image and its captions. */
export interface CaptionImage {
  /** The image's key: a file name (Flickr8k, COCO Karpathy), an id (COCO, ImageInWords). */
  id: string;
  /** The image file name where the source gives one apart from the id (COCO's file_name). */
  file?: string;
  /** Captions in source order (Flickr8k: by their #N; ImageInWords: short first, then long). */
  captions: string[];
  /** The split the image belongs to, where the source says. */
  split?: CaptionSplit;
  /** Per caption, short or long; present only for sources that distinguish them (iiw). */
  kinds?: CaptionKind[];
}

/** One explicit training pair (the `pairs` JSONL format). */
export interface CaptionPair {
  anchor: string;
  positive: string;
  negative?: string;
}

/**
 * A caption source, normalised. Image-caption formats fill `images`; the `pairs` format
 * fills `pairs` and leaves `images` empty.
 */
export interface CaptionDataset {
  format: CaptionFormat;
  /** The file it was read from. */
  source: string;
  images: CaptionImage[];
  pairs?: CaptionPair[];
}

/** Options of {@link loadCaptions} and the per-format loaders. */
export interface LoadCaptionsOptions {
  /** The file format; detected from the extension and the content when absent. */
  format?: CaptionFormat;
  /**
   * Keep only the images of this split. INVALID_ARGUMENT where the source has no split
   * information (rather than silently using every image); Flickr8k reads its split files.
   */
  split?: CaptionSplit;
}
