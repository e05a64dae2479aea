#!/usr/bin/env node
// Builds the native addon, the C library and the native test program with cmake-js
// (npm's install step). LLM2CLIP_CUDA=auto|on|off and LLM2CLIP_CUDA_ARCHS pass through
// the environment to CMakeLists.txt. Node-API headers come from npm packages: nothing
// is downloaded.
const { spawnSync } = require('child_process');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL || String(os.cpus().length) };
const args = [cmakeJs, 'compile', '--directory', root, '--out', path.join(root, 'build')];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env, cwd: root });
if (r.status !== 0) {
  console.error(`llm2clip: the native build failed (cmake-js exit ${r.status}); see the output above`);
  process.exit(r.status || 1);
}
