// The package as a package: what it resolves to, what it holds, and that
// importing it does no work. Runs in the source tree and, copied next to an
// installed tarball (RELAY_WASM_EXPECT_INSTALLED=1, as .ci/run does), there.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const installed = process.env.RELAY_WASM_EXPECT_INSTALLED === '1';
const entry = fileURLToPath(import.meta.resolve('relay-wasm'));
const root = dirname(entry);
const here = fileURLToPath(new URL('..', import.meta.url)); // the folder holding test/

// Every file the package must ship, and what it must not.
const REQUIRED = [
  'package.json',
  'README.md',
  'index.mjs',
  'index.d.ts',
  'client.mjs',
  'relay.mjs',
  'driver.mjs',
  'driver.d.ts',
  'conform.mjs',
  'abi.mjs',
  'component.mjs',
  'wit.mjs',
  'relay.wasm',
];
const FORBIDDEN = /^(gen\/|test\/|bench\.mjs$|example\.mjs$|mini-connector\.mjs$|build\.mjs$|node_modules\/|package-lock\.json$|\.npmrc$)/;

function filesUnder(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path, base) : [relative(base, path)];
  });
}

test('the package resolves to the installed copy, or to this source tree', () => {
  if (installed) {
    assert.match(entry, /[/\\]node_modules[/\\]relay-wasm[/\\]index\.mjs$/, entry);
  } else {
    assert.equal(root, here.replace(/[/\\]$/, ''), 'a self-reference resolves to the source tree');
  }
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  assert.equal(pkg.name, 'relay-wasm');
  assert.equal(pkg.type, 'module');
  assert.deepEqual(Object.keys(pkg.dependencies), ['ws'], 'ws is the one runtime dependency');
  assert.equal(pkg.private, undefined);
});

test('the files shipped: the component and the types, no dev files', () => {
  let files;
  if (installed) {
    files = filesUnder(root).filter((f) => !f.startsWith('node_modules/'));
  } else {
    // What `npm pack` would put in the tarball (needs relay.wasm: `npm run build`).
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    files = JSON.parse(out)[0].files.map((f) => f.path);
  }
  for (const f of REQUIRED) assert.ok(files.includes(f), `${f} is shipped (got ${files.join(', ')})`);
  const extra = files.filter((f) => FORBIDDEN.test(f));
  assert.deepEqual(extra, [], 'dev files are not shipped');
  // Every relative module a shipped module imports is shipped too.
  for (const f of files.filter((f) => f.endsWith('.mjs'))) {
    const source = readFileSync(join(root, f), 'utf8');
    for (const [, spec] of source.matchAll(/^import[^'"]*['"](\.\/[^'"]+)['"]/gm)) {
      assert.ok(files.includes(spec.slice(2)), `${f} imports ${spec}, which is shipped`);
    }
  }
});

test('the shipped relay.wasm is a component, the very one the Rust build made', () => {
  const bytes = readFileSync(join(root, 'relay.wasm'));
  assert.deepEqual([...bytes.subarray(0, 8)], [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00], 'a component preamble');
  const build = join(here, '../../target/component/relay.wasm');
  if (!installed && existsSync(build)) {
    assert.ok(bytes.equals(readFileSync(build)), 'relay.wasm equals target/component/relay.wasm (npm run build)');
  }
});

test('the bin and the exports exist', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const bin = join(root, pkg.bin['relay-wasm-conform']);
  assert.ok(existsSync(bin));
  assert.match(readFileSync(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  for (const target of Object.values(pkg.exports)) {
    for (const path of typeof target === 'string' ? [target] : Object.values(target)) {
      assert.ok(existsSync(join(root, path)), `${path} exists`);
    }
  }
  assert.ok(existsSync(fileURLToPath(import.meta.resolve('relay-wasm/driver'))));
});

test('importing the package compiles and instantiates nothing; load() does', () => {
  // In a fresh process, with WebAssembly's compile and instantiate counted.
  const script = `
    const count = { compiled: 0, instances: 0 };
    const { compile, Module, Instance, instantiate } = WebAssembly;
    WebAssembly.compile = (...a) => (count.compiled++, compile(...a));
    WebAssembly.instantiate = (...a) => (count.compiled++, instantiate(...a));
    WebAssembly.Module = new Proxy(Module, { construct: (t, a) => (count.compiled++, new t(...a)) });
    WebAssembly.Instance = new Proxy(Instance, { construct: (t, a) => (count.instances++, new t(...a)) });
    const relay = await import('relay-wasm');
    await import('relay-wasm/driver');
    const atImport = { ...count };
    const instance = await relay.load();
    console.log(JSON.stringify({ atImport, afterLoad: count, url: instance.dialUrl('https://x.example') }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: here, encoding: 'utf8' });
  const { atImport, afterLoad, url } = JSON.parse(out);
  assert.deepEqual(atImport, { compiled: 0, instances: 0 });
  assert.ok(afterLoad.compiled > 0 && afterLoad.instances > 0, JSON.stringify(afterLoad));
  assert.equal(url, 'wss://x.example/relay');
});
