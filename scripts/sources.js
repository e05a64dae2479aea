#!/usr/bin/env node
// Prints the native sources of the named groups of native/sources.json, one per line:
// binding.gyp expands `<!@(node scripts/sources.js core cpu ...)` into its source list.
const groups = require('../native/sources.json');
for (const g of process.argv.slice(2)) {
  if (!Array.isArray(groups[g])) throw new Error(`sources.js: unknown group ${g}`);
  for (const f of groups[g]) console.log(f);
}
