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
  info               the build: CUDA compiled / available, GPUs, CPU SIMD level, threads
  bench <suite>      run a benchmark suite (gemm, attention, lora, infonce); --device cpu|cuda, --quick
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

/** The caption file, restricted to `split`, or to `fallback` where the source has splits and none is given. */
async function loadSplit(file: string, format: CaptionFormat | undefined, split: CaptionSplit | undefined, fallback: CaptionSplit) {
  const { loadCaptions } = await import('./data/captions');
  const { selectSplit } = await import('./data/select');
  if (split) return loadCaptions(file, { format, split });
  const all = await loadCaptions(file, { format });
  return all.images.some((im) => im.split === fallback) ? selectSplit(all, fallback) : all;
}

async function ccFinetuneCmd(rest: string[]): Promise<number> {
  const f = flags(rest, {
    data: 'string', format: 'string', split: 'string', model: 'string', init: 'string', out: 'string', steps: 'string', 'mntp-steps': 'string',
    'batch-size': 'string', 'chunk-size': 'string', lr: 'string', 'max-length': 'string', device: 'string', seed: 'string',
    'checkpoint-every': 'string', resume: 'boolean', 'eval-data': 'string', 'eval-split': 'string', quiet: 'boolean',
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
    device: f.device as string | undefined, seed: int(f.seed, 'seed'), checkpointEvery: int(f['checkpoint-every'], 'checkpoint-every'),
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

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'cc-finetune':
      return ccFinetuneCmd(rest);
    case 'eval-cra':
      return evalCraCmd(rest);
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
