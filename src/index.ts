// index.ts: the llm2clip package's public API.
export { Llm2ClipError } from './errors';
export type { ErrorCode } from './errors';
export type { DType, DeviceSpec } from './dtype';
export { DTYPES } from './dtype';
export { Tensor } from './tensor';
export type { Shape, HostArray } from './tensor';
export { tensor, zeros, ones, full, rand, randn, manualSeed } from './creation';
export type { CreateOptions, RandomOptions } from './creation';
export { tidy, keep } from './scope';
export { memoryStats, emptyCache, cuda, getNumThreads, setNumThreads, getCpuIsa, setCpuIsa } from './runtime';
export type { MemoryStats, ProcessMemoryStats, CpuIsa } from './runtime';
import * as ops from './ops';
export { ops };
export { noGrad, enableGrad, isGradEnabled, checkpoint } from './autograd';
import * as F from './functional';
export { F };
import * as nn from './nn';
export { nn };
export { Module, Linear, LoRALinear, Embedding, RMSNorm, LayerNorm, Dropout, MLP } from './nn';
export type { ModuleOptions, LoraOptions, LoadStateDictOptions, LoadStateDictResult, Activation } from './nn';
export { AdamW, cosineSchedule } from './optim';
export type { AdamWConfig, StepResult } from './optim';
export { loadSafetensors, saveSafetensors, readSafetensorsHeader, loadSafetensorsDir, MAX_HEADER_BYTES } from './io/safetensors';
export type { LoadSafetensorsOptions, LoadSafetensorsDirOptions, SafetensorsHeader, SafetensorsEntry } from './io/safetensors';
export { savePeftAdapter, loadPeftAdapter, peftName, parsePeftName, loraScale } from './io/peft';
export type { PeftConfig, PeftAdapter, ParsedPeftName } from './io/peft';
export { Tokenizer, trainBpeTokenizer } from './tokenizer';
export type {
  TokenizerJson, TokenizerConfig, EncodeOptions, DecodeOptions, BatchEncodeOptions, InstructionEncodeOptions,
  EncodedBatch, InstructionBatch, InstructionPair, TrainBpeOptions,
} from './tokenizer';
export { LlamaEncoder, parseLlamaConfig } from './models/llama';
export type {
  LlamaConfig, LlamaModelType, LlamaEncoderOptions, LlamaFromPretrainedOptions, LlamaForwardOptions, LlamaPooling,
  LlamaLoraOptions, LlamaLoraConfig, LlamaLoraTarget, MntpLossOptions, LlamaEncodeOptions,
} from './models/llama';
export { loadCaptions, loadCocoCaptions, loadCaptionsJsonl, loadPairsJsonl, loadImageInWords, detectCaptionFormat, captionTexts } from './data/captions';
export { loadFlickr8k, FLICKR8K_SPLIT_FILES } from './data/flickr8k';
export type { CaptionDataset, CaptionImage, CaptionPair, CaptionFormat, CaptionSplit, CaptionKind, LoadCaptionsOptions } from './data/types';
export { splitSentences, firstSentence } from './data/sentences';
export { Rng } from './data/rng';
export type { RngState } from './data/rng';
export { PairSampler } from './data/pairs';
export type { PairSamplerOptions, PairSamplerState, SampledPair, PairMode } from './data/pairs';
export { evaluateCRA } from './eval/cra';
export type { EvaluateCRAOptions, CRAResult, EmbedFn, EmbedSparseFn, DenseEmbeddings } from './eval/cra';
export { TfidfEmbedder, ENGLISH_STOP_WORDS } from './eval/tfidf';
export type { TfidfOptions, SparseVector } from './eval/tfidf';
export { ccFinetune, DEFAULT_CC_INSTRUCTION } from './train/cc';
export type { CcFinetuneOptions, CcFinetuneResult, CcStepInfo } from './train/cc';
export { evaluateEncoderCRA } from './eval/encoder-cra';
export type { EncoderCRAOptions } from './eval/encoder-cra';
export { saveLlamaPretrained, tinyLlamaConfig, llamaConfigToHf } from './models/llama-save';
export type { TinyLlamaSizes } from './models/llama-save';
export { ClipVisionEncoder, parseClipVisionConfig, loadClipVisionConfig, CLIP_VISION_DEFAULTS, preprocessImage, loadImages, clipResizeGeometry, resizeBicubicPil, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD } from './models/clip';
export type { ClipVisionConfig, ClipVisionEncoderOptions, ClipFromPretrainedOptions, ClipForwardOptions, ClipVisionOutput, PreprocessOptions, LoadImagesOptions } from './models/clip';
export { TextAdapter, ADAPTER_LN_EPS } from './models/adapter';
export type { TextAdapterOptions } from './models/adapter';
export { loadImageCaptions, splitByFile, validateImages, IMAGE_EXTENSIONS } from './data/images';
export type { ImageCaptionFormat, ImageCaptionItem, ImageCaptionSet, SkippedImage, LoadImageCaptionsOptions, SplitByFileOptions, ValidateImagesOptions } from './data/images';
export { evaluateRetrieval, evaluateZeroShot } from './eval/retrieval';
export { loadClipModel, embedImages, embedTexts } from './eval/clip-eval';
export type { ClipModel } from './eval/clip-eval';
export type { EmbeddingRows, RecallAtK, EvaluateRetrievalOptions, RetrievalResult, EvaluateZeroShotOptions, ZeroShotResult } from './eval/retrieval';
export { cachedTextFeatures, mappedTextFeatures, encoderFingerprint } from './train/feature-cache';
export type { CachedTextFeaturesOptions, CachedTextFeatures, MappedTextFeatures, TextFeatureEncoder, EncoderFingerprintOptions } from './train/feature-cache';
export { clipVisionPreset } from './models/clip-presets';
export type { ClipVisionPresetName, ClipVisionPresetOptions } from './models/clip-presets';
export { saveClipVisionPretrained, clipVisionConfigToHf, saveTextAdapter, loadTextAdapter } from './models/clip-save';
export type { TextAdapterConfig, LoadTextAdapterOptions } from './models/clip-save';
export { trainClip } from './train/clip';
export type { TrainClipOptions, TrainClipResult, ClipStepInfo } from './train/clip';
export type { NanPolicy } from './train/nan';
export { runDemo } from './demo';
export type { DemoOptions, DemoResult, DemoMetrics, DemoRetrieval } from './demo';
export { writeWorld, worldScenes, makeScene, renderScene, describeObjects, shapeContains, WORLD_SHAPES, WORLD_COLOURS, WORLD_BACKGROUND } from './data/world';
export type { WorldShape, WorldSize, WorldObject, WorldScene, MakeSceneOptions, WriteWorldOptions, WorldDataset } from './data/world';
