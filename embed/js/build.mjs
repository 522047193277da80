// `npm run build`: copies the relay component into this folder as relay.wasm, the
// file the package ships and relay.mjs runs (its main core module, on Node's own
// WebAssembly: docs/CORE-ABI.md). There is no transpile step and no generated JS.
// `node build.mjs --check` (npm's `prepack`): copies nothing, fails when relay.wasm
// is missing, is not a component, or differs from the build, so no tarball ships a
// stale or absent component.
//
// The component is the one Rust builds (`cargo build --release -p relay-host` builds
// crates/relay-component into target/component); RELAY_WASM overrides its path
// (relative paths are taken from this folder). relay.wasm here is a build artifact
// and not committed (.gitignore).
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = resolve(here, process.env.RELAY_WASM || '../../target/component/relay.wasm');
const staged = join(here, 'relay.wasm');
// A component's preamble: the wasm magic, then version 0x0d and layer 1.
const COMPONENT_PREAMBLE = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);

const isComponent = (bytes) => bytes.subarray(0, 8).equals(COMPONENT_PREAMBLE);
const fail = (message) => {
  console.error(`build: ${message}`);
  process.exit(1);
};

if (process.argv.includes('--check')) {
  if (!existsSync(staged)) fail(`${staged} is missing: run \`npm run build\` first`);
  const bytes = readFileSync(staged);
  if (!isComponent(bytes)) fail(`${staged} is not a WebAssembly component`);
  // Without the build beside it (a checkout with only relay.wasm), the copy is all there is.
  if (existsSync(source) && !bytes.equals(readFileSync(source))) {
    fail(`${staged} differs from ${source}: run \`npm run build\` again`);
  }
  console.log(`build --check: ${staged} is the component (${bytes.length} bytes)`);
  process.exit(0);
}

if (!existsSync(source)) {
  fail(`no component at ${source}: run \`cargo build --release -p relay-host\` first, or set RELAY_WASM`);
}
if (!isComponent(readFileSync(source))) fail(`${source} is not a WebAssembly component`);
copyFileSync(source, staged);
console.log(`build: ${source} -> ${staged}`);
