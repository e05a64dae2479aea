#!/usr/bin/env node
// cli.ts: the `llm2clip` command. Subcommands: cc-finetune (stage 1), eval-cra, info
// (what this build can do), bench <suite> (benchmarks), version.
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';
import { cuda, getCpuIsa, getNumThreads, memoryStats, Llm2ClipError } from './index';
import type { CaptionFormat, CaptionSplit } from './data/types';

const HELP = `usage: llm2clip <command> [options]   (llm2clip <command> --help for its options)
  cc-finetune        caption-contrastive fine-tuning of an LLM encoder (LLM2CLIP stage 1)
  eval-cra           caption retrieval accuracy of an encoder on a caption file
  train-clip         train a vision encoder + text adapter on a frozen LLM (LLM2CLIP stage 2)
  eval-retrieval     image->text and text->image recall@1/5/10 of a trained model
  zeroshot           zero-shot classification accuracy on class folders
  demo               the main job: the whole LLM2CLIP pipeline on a generated world (report.html, metrics.json)
  info               the build: CUDA compiled / available, GPUs, CPU SIMD level, threads
  bench <suite>      run a benchmark suite (gemm, attention, lora, infonce, train-step); --device cpu|cuda, --quick, --out DIR
  version            the package version`;

const CC_HELP = `usage: llm2clip cc-finetune --data FILE [options]
  --data FILE              captions: COCO JSON, Flickr8k token file, JSONL pairs / captions, ImageInWords JSONL
  --format F               coco | flickr8k | pairs | captions | iiw (default: detected)
  --split S                train | dev | test (default: train where the source has splits)
  --model DIR              a Hugging Face Llama / Mistral / Qwen2 directory (with tokenizer.json)
  --init tiny|small        a from-scratch model with a tokenizer learned from the captions (default tiny)
  --out DIR                output directory (default ./llm2clip-cc): base/, adapter/, log.jsonl, metrics.json, checkpoints/
  --steps N                SimCSE steps (default: one pass over the images)
  --mntp-steps N           MNTP steps first (default: one epoch for --init, 0 for --model)
  --batch-size N           pairs per SimCSE step (default 128)
  --chunk-size N           sequences per forward chunk (GradCache; default 64)
  --lr X                   SimCSE learning rate
  --max-length N           tokens per caption (default 64)
  --device cpu|cuda        default cuda when available
  --seed N                 default 0
  --checkpoint-every N     default 100
  --nan-policy stop|skip   a non-finite loss / gradient stops training (default) or skips the step
  --resume                 continue from the output directory's last checkpoint
  --eval-data FILE         also report CRA on this file after MNTP and after fine-tuning
  --eval-split S           split of --eval-data (default test)
  --quiet                  no progress output`;

const CRA_HELP = `usage: llm2clip eval-cra --data FILE --model DIR [options]
  --data FILE              captions (formats as cc-finetune)
  --format F               coco | flickr8k | pairs | captions | iiw (default: detected)
  --split S                train | dev | test (default test where the source has splits)
  --model DIR              encoder directory (config.json, safetensors, tokenizer.json), e.g. OUT/base
  --adapter DIR            a PEFT LoRA adapter to apply (e.g. OUT/adapter)
  --tfidf                  evaluate the TF-IDF bag-of-words baseline instead of a model
  --instruction TEXT       instruction before every caption (default none)
  --device cpu|cuda        default cuda when available
  --json                   one JSON object on stdout`;

function flags(rest: string[], spec: Record<string, 'string' | 'boolean'>): Record<string, string | boolean | undefined> {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const [k, t] of Object.entries(spec)) options[k] = { type: t };
  return parseArgs({ args: rest, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
}

function int(v: string | boolean | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Llm2ClipError('INVALID_ARGUMENT', `--${name} must be a non-negative integer (got ${String(v)})`);
  return n;
}

function num(v: string | boolean | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) throw new Llm2ClipError('INVALID_ARGUMENT', `--${name} must be a number (got ${String(v)})`);
  return n;
}

function nanPolicy(v: string | boolean | undefined): 'stop' | 'skip' | undefined {
  if (v === undefined) return undefined;
  if (v !== 'stop' && v !== 'skip') throw new Llm2ClipError('INVALID_ARGUMENT', `--nan-policy must be stop or skip (got ${String(v)})`);
  return v;
}

async function loadSplit(file: string, format: CaptionFormat | undefined, split: CaptionSplit | undefined, fallback: CaptionSplit) {
  const { loadCaptionsSplit } = await import('./data/captions');
  return loadCaptionsSplit(file, { format, split }, fallback);
}

async function ccFinetuneCmd(rest: string[]): Promise<number> {
  const f = flags(rest, {
    data: 'string', format: 'string', split: 'string', model: 'string', init: 'string', out: 'string', steps: 'string', 'mntp-steps': 'string',
    'batch-size': 'string', 'chunk-size': 'string', lr: 'string', 'max-length': 'string', device: 'string', seed: 'string',
    'checkpoint-every': 'string', resume: 'boolean', 'eval-data': 'string', 'eval-split': 'string', quiet: 'boolean', 'nan-policy': 'string',
  });
  if (f.help) return console.log(CC_HELP), 0;
  if (!f.data) return console.error(`llm2clip cc-finetune: --data is required\n${CC_HELP}`), 2;
  if (f.model && f.init) return console.error('llm2clip cc-finetune: give --model or --init, not both'), 2;
  if (f.init && f.init !== 'tiny' && f.init !== 'small') return console.error(`llm2clip cc-finetune: --init must be tiny or small`), 2;
  const { ccFinetune } = await import('./train/cc');
  const { evaluateEncoderCRA } = await import('./eval/encoder-cra');
  const format = f.format as CaptionFormat | undefined;
  const evalDs = f['eval-data'] ? await loadSplit(f['eval-data'] as string, format, f['eval-split'] as CaptionSplit | undefined, 'test') : null;
  const ac = new AbortController();
  const onSig = () => {
    if (ac.signal.aborted) process.exit(130);
    console.error('\nllm2clip: stopping after this step (a checkpoint is written); press Ctrl-C again to quit now');
    ac.abort();
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  const report: Record<string, unknown> = {};
  const r = await ccFinetune({
    data: f.data as string, format, split: f.split as CaptionSplit | undefined,
    model: (f.model as string | undefined) ?? ((f.init as 'tiny' | 'small' | undefined) ?? 'tiny'),
    outputDir: f.out as string | undefined, steps: int(f.steps, 'steps'), mntpSteps: int(f['mntp-steps'], 'mntp-steps'),
    batchSize: int(f['batch-size'], 'batch-size'), chunkSize: int(f['chunk-size'], 'chunk-size'),
    lr: f.lr !== undefined ? Number(f.lr) : undefined, maxLength: int(f['max-length'], 'max-length'),
    device: f.device as string | undefined, seed: int(f.seed, 'seed'), checkpointEvery: int(f['checkpoint-every'], 'checkpoint-every'), nanPolicy: nanPolicy(f['nan-policy']),
    resume: !!f.resume, progress: !f.quiet, signal: ac.signal,
    onBaseReady: evalDs
      ? async (encoder, tokenizer) => {
          report.craBase = await evaluateEncoderCRA({ encoder, tokenizer, dataset: evalDs });
          console.error(`CRA before contrastive fine-tuning: ${JSON.stringify(report.craBase)}`);
        }
      : undefined,
  });
  if (evalDs && !r.aborted) {
    report.craFinetuned = await evaluateEncoderCRA({ encoder: r.encoder, tokenizer: r.tokenizer, dataset: evalDs });
    console.error(`CRA after contrastive fine-tuning: ${JSON.stringify(report.craFinetuned)}`);
    const mfile = path.join(r.outputDir, 'metrics.json');
    const m = JSON.parse(fs.readFileSync(mfile, 'utf8'));
    fs.writeFileSync(mfile, JSON.stringify({ ...m, ...report }, null, 1));
  }
  console.log(JSON.stringify({ outputDir: r.outputDir, aborted: r.aborted, mntpSteps: r.mntpSteps, steps: r.steps, finalLoss: r.losses.at(-1) ?? null, elapsedMs: r.elapsedMs, ...report }));
  return r.aborted ? 130 : 0;
}

async function evalCraCmd(rest: string[]): Promise<number> {
  const f = flags(rest, { data: 'string', format: 'string', split: 'string', model: 'string', adapter: 'string', tfidf: 'boolean', instruction: 'string', device: 'string', json: 'boolean' });
  if (f.help) return console.log(CRA_HELP), 0;
  if (!f.data || (!f.model && !f.tfidf)) return console.error(`llm2clip eval-cra: --data and --model (or --tfidf) are required\n${CRA_HELP}`), 2;
  const format = f.format as CaptionFormat | undefined;
  const dataset = await loadSplit(f.data as string, format, f.split as CaptionSplit | undefined, 'test');
  let res;
  if (f.tfidf) {
    const { TfidfEmbedder } = await import('./eval/tfidf');
    const { evaluateCRA } = await import('./eval/cra');
    const tf = TfidfEmbedder.fit(dataset.images.flatMap((im) => im.captions));
    res = await evaluateCRA({ dataset, embedSparse: (t) => tf.embedSparse(t) });
  } else {
    const { LlamaEncoder } = await import('./models/llama');
    const { Tokenizer } = await import('./tokenizer');
    const { evaluateEncoderCRA } = await import('./eval/encoder-cra');
    const device = (f.device as string | undefined) ?? (cuda.isAvailable() ? 'cuda' : 'cpu');
    const encoder = await LlamaEncoder.fromPretrained(f.model as string, { device, dtype: device === 'cpu' ? 'float32' : 'bfloat16', lmHead: false });
    if (f.adapter) await encoder.loadLora(f.adapter as string);
    const tokenizer = Tokenizer.fromDir(f.model as string);
    res = await evaluateEncoderCRA({ encoder, tokenizer, dataset, instruction: (f.instruction as string | undefined) ?? '' });
  }
  if (f.json) console.log(JSON.stringify(res));
  else console.log(`CRA ${(100 * res.cra).toFixed(1)}% (top-1 over ${res.images} images)${res.craAllPairs !== null ? `, all-pairs ${(100 * res.craAllPairs).toFixed(1)}% over ${res.captions} captions` : ''}`);
  return 0;
}

const TRAIN_CLIP_HELP = `usage: llm2clip train-clip --images DIR [--captions FILE] --text-model DIR [options]
  --images DIR             image folder (or class folders CLASS/*.jpg with --format classes)
  --captions FILE          Flickr8k token file / NAME<TAB>caption TSV / COCO JSON / JSONL {"image","caption(s)"}
  --format F               flickr8k | tsv | coco | jsonl | classes (default: detected)
  --split S                train | dev | test (caption files with split files); classes: --holdout splits 80/20 by file
  --holdout                with --format classes: train on the 80% of files (the 20% are for zeroshot --holdout)
  --prompt TEXT            class-folder captions (default "a photo of a {class}.")
  --text-model DIR         the frozen text encoder (e.g. ccFinetune's OUT/base)
  --adapter DIR            its PEFT adapter (e.g. OUT/adapter)
  --vision DIR             a CLIP vision checkpoint, or --vision-init tiny|small (default tiny)
  --image-size N           preset image size
  --out DIR                output directory (default ./llm2clip-clip)
  --epochs N --batch-size N --micro-batch N --lr X --seed N --device cpu|cuda
  --layer-decay X          layer-wise lr decay of the vision tower (default 1: none)
  --long-prob P            chance of a long caption where an image has both kinds (default 0.5)
  --no-augment             no random crops (default: a random crop from 8/7 of the size)
  --nan-policy stop|skip   a non-finite loss / gradient stops training (default) or skips the step
  --checkpoint-every N --resume --skip-bad-images --quiet`;

const EVAL_RET_HELP = `usage: llm2clip eval-retrieval --images DIR --captions FILE --model OUTDIR [--format F] [--split test] [--kind short|long] [--json]
  --kind K                 only the short or only the long captions (JSONL long_caption(s), ImageInWords)`;
const ZEROSHOT_HELP = `usage: llm2clip zeroshot --images DIR --model OUTDIR [--prompt "a photo of a {class}."] [--holdout] [--json]
  --holdout                evaluate only the 20% of files that train-clip --holdout left out`;

async function imageSet(f: Record<string, string | boolean | undefined>) {
  const { loadImageCaptions, splitByFile } = await import('./data/images');
  const set = await loadImageCaptions({
    images: f.images as string, captions: f.captions as string | undefined, format: f.format as never, split: f.split as CaptionSplit | undefined,
    prompt: f.prompt as string | undefined, skipBadImages: !!f['skip-bad-images'],
  });
  if (f['skip-bad-images']) {
    // Undecodable images are dropped (and counted) before training instead of failing it.
    const { validateImages } = await import('./data/images');
    const v = await validateImages(set.items, { skipBadImages: true });
    set.items = v.items;
    set.skipped.push(...v.skipped);
  }
  return { set, split: (part: 'train' | 'test') => (f.holdout ? splitByFile(set.items)[part] : set.items) };
}

async function trainClipCmd(rest: string[]): Promise<number> {
  const f = flags(rest, {
    images: 'string', captions: 'string', format: 'string', split: 'string', holdout: 'boolean', prompt: 'string', 'text-model': 'string', adapter: 'string',
    vision: 'string', 'vision-init': 'string', 'image-size': 'string', out: 'string', epochs: 'string', 'batch-size': 'string', 'micro-batch': 'string',
    lr: 'string', seed: 'string', device: 'string', 'checkpoint-every': 'string', resume: 'boolean', 'skip-bad-images': 'boolean', quiet: 'boolean', 'nan-policy': 'string',
    'layer-decay': 'string', 'long-prob': 'string', 'no-augment': 'boolean',
  });
  if (f.help) return console.log(TRAIN_CLIP_HELP), 0;
  if (!f.images || !f['text-model']) return console.error(`llm2clip train-clip: --images and --text-model are required\n${TRAIN_CLIP_HELP}`), 2;
  const { trainClip } = await import('./train/clip');
  const { set, split } = await imageSet(f);
  const ac = new AbortController();
  process.on('SIGINT', () => (ac.signal.aborted ? process.exit(130) : ac.abort()));
  const r = await trainClip({
    items: split('train'), textModel: f['text-model'] as string, textAdapterDir: f.adapter as string | undefined,
    vision: (f.vision as string | undefined) ?? ((f['vision-init'] as 'tiny' | 'small' | undefined) ?? 'tiny'), imageSize: int(f['image-size'], 'image-size'),
    outputDir: f.out as string | undefined, epochs: int(f.epochs, 'epochs'), batchSize: int(f['batch-size'], 'batch-size'), microBatch: int(f['micro-batch'], 'micro-batch'),
    lr: num(f.lr, 'lr'), seed: int(f.seed, 'seed'), device: f.device as string | undefined,
    layerDecay: num(f['layer-decay'], 'layer-decay'), longCaptionProbability: num(f['long-prob'], 'long-prob'), augment: !f['no-augment'],
    checkpointEvery: int(f['checkpoint-every'], 'checkpoint-every'), resume: !!f.resume, progress: !f.quiet, signal: ac.signal, nanPolicy: nanPolicy(f['nan-policy']),
  });
  console.log(JSON.stringify({ outputDir: r.outputDir, aborted: r.aborted, steps: r.steps, finalLoss: r.losses.at(-1) ?? null, logitScale: r.logitScale, featuresReused: r.featuresReused, skippedImages: set.skipped.length, elapsedMs: r.elapsedMs }));
  return r.aborted ? 130 : 0;
}

async function evalRetrievalCmd(rest: string[]): Promise<number> {
  const f = flags(rest, { images: 'string', captions: 'string', format: 'string', split: 'string', model: 'string', holdout: 'boolean', device: 'string', json: 'boolean', 'skip-bad-images': 'boolean', kind: 'string' });
  if (f.help) return console.log(EVAL_RET_HELP), 0;
  if (f.kind !== undefined && f.kind !== 'short' && f.kind !== 'long') throw new Llm2ClipError('INVALID_ARGUMENT', `--kind must be short or long (got ${String(f.kind)})`);
  if (!f.images || !f.captions || !f.model) return console.error(`llm2clip eval-retrieval: --images, --captions and --model are required\n${EVAL_RET_HELP}`), 2;
  const { loadClipModel, embedImages, embedTexts } = await import('./eval/clip-eval');
  const { evaluateRetrieval } = await import('./eval/retrieval');
  if (!f.split && !f.holdout) f.split = 'test';
  let items;
  try {
    items = (await imageSet(f)).split('test');
  } catch (e) {
    if (!(e instanceof Llm2ClipError) || !/split/.test(e.message) || rest.includes('--split')) throw e;
    f.split = undefined; // a source without split information: all of it
    items = (await imageSet(f)).split('test');
  }
  if (f.kind) {
    // Captions of the kind asked for (untyped captions count as short); images left without one drop out.
    const kind = f.kind;
    items = items
      .map((it) => ({ ...it, captions: it.captions.filter((_, j) => (it.kinds?.[j] ?? 'short') === kind) }))
      .filter((it) => it.captions.length > 0);
    if (items.length === 0) throw new Llm2ClipError('INVALID_ARGUMENT', `eval-retrieval: no ${kind} captions in ${String(f.captions)}`);
  }
  const m = await loadClipModel(f.model as string, { device: f.device as string | undefined });
  const texts = items.flatMap((it) => it.captions);
  const textImage = Int32Array.from(items.flatMap((it, i) => it.captions.map(() => i)));
  const res = evaluateRetrieval({ imageEmbeds: await embedImages(m, items.map((it) => it.image)), textEmbeds: embedTexts(m, texts), textImage });
  if (f.json) console.log(JSON.stringify(res));
  else console.log(`image->text R@1/5/10 ${[res.i2t.r1, res.i2t.r5, res.i2t.r10].map((v) => (100 * v).toFixed(1)).join(' / ')}%, text->image ${[res.t2i.r1, res.t2i.r5, res.t2i.r10].map((v) => (100 * v).toFixed(1)).join(' / ')}% (${res.images} images, ${res.captions} captions; chance t2i R@1 ${(100 * res.chance.t2i.r1).toFixed(2)}%)`);
  return 0;
}

async function zeroshotCmd(rest: string[]): Promise<number> {
  const f = flags(rest, { images: 'string', model: 'string', prompt: 'string', holdout: 'boolean', device: 'string', json: 'boolean', 'skip-bad-images': 'boolean' });
  if (f.help) return console.log(ZEROSHOT_HELP), 0;
  if (!f.images || !f.model) return console.error(`llm2clip zeroshot: --images and --model are required\n${ZEROSHOT_HELP}`), 2;
  f.format = 'classes';
  const { loadClipModel, embedImages, embedTexts } = await import('./eval/clip-eval');
  const { evaluateZeroShot } = await import('./eval/retrieval');
  const { set, split } = await imageSet(f);
  const items = split('test');
  const classes = set.classes ?? [];
  const prompt = (f.prompt as string | undefined) ?? 'a photo of a {class}.';
  const m = await loadClipModel(f.model as string, { device: f.device as string | undefined });
  const res = evaluateZeroShot({
    imageEmbeds: await embedImages(m, items.map((it) => it.image)),
    classEmbeds: embedTexts(m, classes.map((c) => prompt.split('{class}').join(c))),
    labels: Int32Array.from(items.map((it) => it.label ?? -1)),
  });
  const out = { accuracy: res.accuracy, chance: res.chance, classes: res.classes, images: res.images };
  if (f.json) console.log(JSON.stringify(out));
  else console.log(`zero-shot accuracy ${(100 * res.accuracy).toFixed(1)}% over ${res.images} images, ${res.classes} classes (chance ${(100 * res.chance).toFixed(1)}%)`);
  return 0;
}

const DEMO_HELP = `usage: llm2clip demo [--out DIR] [--data DIR] [--device cpu|cuda] [--quick] [--seed N]
  Runs the whole LLM2CLIP pipeline on a world of coloured shapes it generates (no download):
  BPE tokenizer -> MNTP + caption-contrastive LoRA fine-tuning of a tiny bidirectional Llama
  (CRA before / after) -> cached caption features -> tiny ViT + adapter with the CLIP loss ->
  image<->text retrieval (short and long captions apart) and zero-shot, each against chance.
  --out DIR                output folder (default ./llm2clip-demo): report.html, metrics.json, data/, cc/, clip/
  --data DIR               run on a data folder instead: DIR/images/ + DIR/captions.jsonl (or captions.tsv,
                           captions.json, Flickr8k.token.txt; JSONL records may add "long_caption"), optional
                           DIR/pairs.jsonl (stage-1 pairs), DIR/corpus.txt, DIR/classes/CLASS/* and DIR/prompt.txt
  --device cpu|cuda        default cuda when available
  --quick                  a smoke run of seconds (the full run: under 2 minutes on 2 idle CPU cores)
  --seed N                 seed of the world and of every stage (default 0)
  --quiet                  no progress lines`;

async function demoCmd(rest: string[]): Promise<number> {
  const f = flags(rest, { out: 'string', data: 'string', device: 'string', quick: 'boolean', seed: 'string', quiet: 'boolean' });
  if (f.help) return console.log(DEMO_HELP), 0;
  const { runDemo } = await import('./demo');
  const r = await runDemo({ out: f.out as string | undefined, data: f.data as string | undefined, device: f.device as string | undefined, quick: !!f.quick, seed: int(f.seed, 'seed'), progress: !f.quiet });
  const m = r.metrics;
  const p = (v: number | undefined | null): string => (typeof v === 'number' ? `${(100 * v).toFixed(1)}%` : 'n/a');
  console.log(`report: ${r.reportPath}\nmetrics: ${r.metricsPath}`);
  console.log(`CRA ${p(m.cra?.before)} -> ${p(m.cra?.after)} (chance ${p(m.cra?.chance)}); R@1 i2t/t2i short ${p(m.retrievalShort?.i2t.r1)}/${p(m.retrievalShort?.t2i.r1)}, long ${p(m.retrievalLong?.i2t.r1)}/${p(m.retrievalLong?.t2i.r1)} (chance ${p(m.retrieval.chance.t2i.r1)}); zero-shot ${p(m.zeroShot?.accuracy)} (chance ${p(m.zeroShot?.chance)}); ${m.seconds.toFixed(0)} s on ${m.device}`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'cc-finetune':
      return ccFinetuneCmd(rest);
    case 'eval-cra':
      return evalCraCmd(rest);
    case 'train-clip':
      return trainClipCmd(rest);
    case 'eval-retrieval':
      return evalRetrievalCmd(rest);
    case 'zeroshot':
      return zeroshotCmd(rest);
    case 'demo':
      return demoCmd(rest);
    case 'info': {
      const n = cuda.deviceCount();
      console.log(`cuda compiled:   ${cuda.compiled()}`);
      console.log(`cuda available:  ${cuda.isAvailable()}`);
      for (let i = 0; i < n; i++) console.log(`cuda:${i}:          ${cuda.deviceName(i)}`);
      console.log(`cpu simd:        ${getCpuIsa()}`);
      console.log(`cpu threads:     ${getNumThreads()}`);
      console.log(`cpu memory:      ${memoryStats().cpu.allocatedBytes} bytes allocated`);
      return 0;
    }
    case 'bench': {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { runBench } = require(path.join(__dirname, '..', 'bench', 'index.js'));
      return runBench(rest);
    }
    case 'version':
    case '--version':
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      console.log(require(path.join(__dirname, '..', '..', 'package.json')).version);
      return 0;
    case undefined:
    case 'help':
    case '--help':
      console.log(HELP);
      return 0;
    default:
      console.error(`llm2clip: unknown command ${JSON.stringify(cmd)}\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof Llm2ClipError) console.error(`llm2clip: ${e.code}: ${e.message}`);
    else if (e instanceof Error && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) console.error(`llm2clip: ${e.message} (see --help)`);
    else console.error(e);
    process.exitCode = (e as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS') ? 2 : 1;
  },
);
