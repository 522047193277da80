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
  'gen/relay.js',
  'gen/relay.d.ts',
  'gen/relay.core.wasm',
  'gen/interfaces/hermes-relay-session.d.ts',
];
const FORBIDDEN = /^(test\/|bench\.mjs$|example\.mjs$|mini-connector\.mjs$|build\.mjs$|node_modules\/|package-lock\.json$|\.npmrc$)/;

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

test('the files shipped: the transpiled component and the types, no dev files', () => {
  let files;
  if (installed) {
    files = filesUnder(root).filter((f) => !f.startsWith('node_modules/'));
  } else {
    // What `npm pack` would put in the tarball (needs gen/: `npm run build`).
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    files = JSON.parse(out)[0].files.map((f) => f.path);
  }
  for (const f of REQUIRED) assert.ok(files.includes(f), `${f} is shipped (got ${files.join(', ')})`);
  const extra = files.filter((f) => FORBIDDEN.test(f));
  assert.deepEqual(extra, [], 'dev files are not shipped');
  // Every core module the glue loads is there.
  const glue = readFileSync(join(root, 'gen/relay.js'), 'utf8');
  for (const [, name] of glue.matchAll(/getCoreModule\('([^']+\.wasm)'\)/g)) {
    assert.ok(files.includes(`gen/${name}`), `gen/${name} is shipped`);
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
