// bench/index.ts: `npm run bench -- <suite> [options]` and `llm2clip bench <suite>`.
// Suites: gemm, attention, lora, infonce. Options: --device cpu|cuda, --quick (small sizes).
import { runGemm } from './gemm';
import { runAttention } from './attention';
import { runLora } from './lora';
import { runInfonce } from './infonce';

const SUITES: Record<string, (args: string[]) => void> = {
  gemm: runGemm,
  attention: runAttention,
  lora: runLora,
  infonce: runInfonce,
};

export function runBench(args: string[]): number {
  const suite = args[0];
  if (!suite || !(suite in SUITES)) {
    console.error(`usage: npm run bench -- <suite> [--device cpu|cuda] [--quick]\nsuites: ${Object.keys(SUITES).join(', ')}`);
    return 2;
  }
  SUITES[suite](args.slice(1));
  return 0;
}

if (require.main === module) process.exit(runBench(process.argv.slice(2)));
