// `npm run build`: transpiles the relay component into JS glue + core wasm in gen/.
// `node build.mjs --check` (npm's `prepack`): transpiles nothing, fails when gen/
// is missing or older than the component, so no tarball ships without it.
//
// The component is the one Rust builds (`cargo build --release -p relay-host` builds
// crates/relay-component into target/component);
// RELAY_WASM overrides its path (relative paths are taken from this folder).
// gen/ is generated output and not committed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wasm = resolve(
  here,
  process.env.RELAY_WASM || '../../target/component/relay.wasm',
);
const out = join(here, 'gen');

if (process.argv.includes('--check')) {
  const glue = join(out, 'relay.js');
  const cores = existsSync(out) ? readdirSync(out).filter((n) => n.endsWith('.wasm')) : [];
  if (!existsSync(glue) || !cores.length) {
    console.error(`build --check: ${out} has no transpiled component: run \`npm run build\` first`);
    process.exit(1);
  }
  if (existsSync(wasm) && statSync(wasm).mtimeMs > statSync(glue).mtimeMs) {
    console.error(`build --check: ${wasm} is newer than ${glue}: run \`npm run build\` again`);
    process.exit(1);
  }
  console.log(`build --check: ${out} holds relay.js and ${cores.join(', ')}`);
  process.exit(0);
}

if (!existsSync(wasm)) {
  console.error(`build: no component at ${wasm}`);
  console.error('build: run `cargo build --release -p relay-host` first, or set RELAY_WASM');
  process.exit(1);
}

// jco's CLI from this package's own node_modules (no global install, no npx);
// its package.json is not in its `exports`, so it is read by path.
const jcoDir = join(here, 'node_modules', '@bytecodealliance', 'jco');
const jcoBin = join(jcoDir, JSON.parse(readFileSync(join(jcoDir, 'package.json'), 'utf8')).bin.jco);

rmSync(out, { recursive: true, force: true });
// --instantiation sync: the glue imports nothing by itself; relay.mjs hands it a
// minimal WASI import object, so the guest gets no real environment, stdio, clock
// or filesystem (the preview2-shim defaults would give it the process's).
const args = [jcoBin, 'transpile', wasm, '-o', out, '--name', 'relay', '--instantiation', 'sync', '--quiet'];
const run = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);
console.log(`build: ${wasm} -> ${out}`);
