// `npm run build`: transpiles the relay component into JS glue + core wasm in gen/.
//
// The component is the one Rust builds (`cargo build --release -p relay-host` builds
// crates/relay-component into target/component);
// RELAY_WASM overrides its path (relative paths are taken from this folder).
// gen/ is generated output and not committed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wasm = resolve(
  here,
  process.env.RELAY_WASM || '../../target/component/wasm32-wasip2/release/relay_component.wasm',
);
if (!existsSync(wasm)) {
  console.error(`build: no component at ${wasm}`);
  console.error('build: run `cargo build --release -p relay-host` first, or set RELAY_WASM');
  process.exit(1);
}

// jco's CLI from this package's own node_modules (no global install, no npx);
// its package.json is not in its `exports`, so it is read by path.
const jcoDir = join(here, 'node_modules', '@bytecodealliance', 'jco');
const jcoBin = join(jcoDir, JSON.parse(readFileSync(join(jcoDir, 'package.json'), 'utf8')).bin.jco);

const out = join(here, 'gen');
rmSync(out, { recursive: true, force: true });
// --instantiation sync: the glue imports nothing by itself; relay.mjs hands it a
// minimal WASI import object, so the guest gets no real environment, stdio, clock
// or filesystem (the preview2-shim defaults would give it the process's).
const args = [jcoBin, 'transpile', wasm, '-o', out, '--name', 'relay', '--instantiation', 'sync', '--quiet'];
const run = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);
console.log(`build: ${wasm} -> ${out}`);
