#!/usr/bin/env node
// cli.ts: the `llm2clip` command. Subcommands: info (what this build can do),
// bench <suite> (benchmarks), version. Training commands arrive with ccFinetune/trainClip.
import * as path from 'path';
import { cuda, getCpuIsa, getNumThreads, memoryStats } from './index';

const HELP = `usage: llm2clip <command>
  info               the build: CUDA compiled / available, GPUs, CPU SIMD level, threads
  bench <suite>      run a benchmark suite (gemm); --device cpu|cuda, --quick
  version            the package version`;

function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  switch (cmd) {
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

process.exitCode = main(process.argv.slice(2));
