// Builds this plugin into a WebAssembly component: node build.mjs [OUT.wasm] (default plugin.wasm).
// The world (wit/world.wit) imports only `imgate:plugin/config`: componentize-js imports every
// interface its world names, and imgate refuses a component that imports a capability it was not
// granted. Every componentize-js feature that would import WASI (random, stdio, clocks, http) is
// off, so the component imports `imgate:plugin/config` and nothing else.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? 'plugin.wasm';
const started = Date.now();
const { component } = await componentize({
  sourcePath: join(here, 'src', 'plugin.js'),
  witPath: join(here, 'wit'),
  worldName: 'plugin',
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`${out}: ${component.length} bytes in ${Date.now() - started} ms`);
