// Builds the JavaScript content filter into a component: node build.mjs OUT.wasm
// The contract is taken from the repository's wit/plugin.wit (never a copy kept here); every
// componentize-js feature that would import WASI (random, stdio, clocks, http) is off, so the
// component imports `imgate:plugin/config` and nothing else.
import { componentize } from '@bytecodealliance/componentize-js';
import { copyFile, mkdir, mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) throw new Error('usage: node build.mjs OUT.wasm');
const wit = await mkdtemp(join(tmpdir(), 'imgate-js-wit-'));
try {
  await mkdir(join(wit, 'deps', 'imgate'), { recursive: true });
  await copyFile(join(here, 'wit', 'world.wit'), join(wit, 'world.wit'));
  await copyFile(join(here, '..', '..', 'wit', 'plugin.wit'), join(wit, 'deps', 'imgate', 'plugin.wit'));
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: join(here, 'src', 'filter.js'),
    witPath: wit,
    worldName: 'plugin',
    disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
  });
  await writeFile(out, component);
  console.log(`${out}: ${component.length} bytes in ${Date.now() - started} ms`);
} finally {
  await rm(wit, { recursive: true, force: true });
}
