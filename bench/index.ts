// bench/index.ts: `npm run bench -- <suite> [options]` and `llm2clip bench <suite>`.
// Suites: gemm, attention, lora, infonce, train-step. Options (every suite):
//   --device cpu|cuda[:N]  where to run (default cpu; CUDA fails clearly without a GPU)
//   --quick                small sizes (tests, smoke runs)
//   --out DIR              where <suite>.json and <suite>.svg go (default bench/results)
//   --no-baseline          skip the external baselines (numpy/OpenBLAS, PyTorch)
//   --max-n N              infonce: the sweep's largest batch size
//   --mem-budget GiB       infonce: the memory the sweep may use (CPU default: a quarter of RAM)
import { Llm2ClipError } from '../src';
import { parseBenchArgs, BenchOptions } from './harness';
import { runGemm } from './gemm';
import { runAttention } from './attention';
import { runLora } from './lora';
import { runInfonce } from './infonce';
import { runTrainStep } from './train-step';

/** The suites by name. */
export const SUITES: Record<string, (o: BenchOptions) => void> = {
  gemm: runGemm,
  attention: runAttention,
  lora: runLora,
  infonce: runInfonce,
  'train-step': runTrainStep,
};

export const BENCH_USAGE = `usage: npm run bench -- <suite> [--device cpu|cuda[:N]] [--quick] [--out DIR] [--no-baseline] [--max-n N] [--mem-budget GiB]
suites: ${Object.keys(SUITES).join(', ')}`;

/**
 * Runs one suite: args[0] is its name, the rest its options. Returns 0, or 2 (usage printed)
 * for a missing / unknown suite; bad options and an unavailable device throw Llm2ClipError.
 */
export async function runBench(args: string[]): Promise<number> {
  const suite = args[0];
  if (suite === '--help' || suite === 'help') {
    console.log(BENCH_USAGE);
    return 0;
  }
  if (!suite || !Object.prototype.hasOwnProperty.call(SUITES, suite)) {
    console.error(`${suite ? `unknown suite ${JSON.stringify(suite)}\n` : ''}${BENCH_USAGE}`);
    return 2;
  }
  const o = parseBenchArgs(suite, args.slice(1));
  SUITES[suite](o);
  return 0;
}

if (require.main === module) {
  runBench(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      if (e instanceof Llm2ClipError) {
        console.error(`bench: ${e.code}: ${e.message}`);
        process.exitCode = e.code === 'INVALID_ARGUMENT' ? 2 : 1;
      } else {
        console.error(e);
        process.exitCode = 1;
      }
    },
  );
}
