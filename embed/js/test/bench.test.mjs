// bench.mjs --corpus with --python-ref: the floors are reported and the reference's
// figures are read from its output contract (the last stdout line), or skipped with
// a note. bench.mjs is not in the package: this runs in the source tree only.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const bench = fileURLToPath(new URL('../bench.mjs', import.meta.url));
const skip = existsSync(bench) ? false : 'bench.mjs is not beside the tests (an installed copy)';

function run(dir, script) {
  const lines = Array.from({ length: 50 }, (_, i) =>
    JSON.stringify({
      type: 'inbound',
      event: { text: `hello ${i} grüße`, message_id: `m${i}`, source: { platform: 'discord', chat_id: 'c1', user_id: 'u1' } },
    }));
  const corpus = join(dir, 'corpus.ndjson');
  writeFileSync(corpus, `${lines.join('\n')}\n`);
  const out = join(dir, `${script.split('/').pop()}.json`);
  const done = spawnSync(process.execPath, [bench, '--quick', '--corpus', corpus, '--seconds', '0.1', '--json', out, '--python-ref', script], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(done.status, 0, done.stdout + done.stderr);
  return { report: JSON.parse(readFileSync(out, 'utf8')), stderr: done.stderr };
}

test('--python-ref reads the reference and gives every figure its ratio', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-'));
  try {
    const script = join(dir, 'ok.py');
    writeFileSync(script, [
      "import sys; assert sys.argv[2:] == ['--runs', '3'], sys.argv",
      "print('warming up')",
      'print(\'{"py_ref_fps": 1000.0, "py_json_floor_fps": 4000.0, "frames": 50}\')',
      '',
    ].join('\n'));
    const { report } = run(dir, script);
    assert.equal(report.corpus.frames, 50);
    assert.deepEqual([report.py_ref_fps, report.py_json_floor_fps], [1000, 4000]);
    for (const key of ['js_component_fps', 'js_guest_only_fps', 'js_event_objects_floor_fps', 'js_utf8_decode_floor_fps']) {
      assert.ok(report[key] > 0, key);
      assert.equal(report.js_vs_ref[key], report[key] / 1000, key);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--python-ref that cannot run is a note and nulls, not a failure', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-'));
  try {
    const fails = join(dir, 'fails.py');
    writeFileSync(fails, "import sys; sys.exit('no reference modules here')\n");
    for (const [script, why] of [[fails, 'no reference modules here'], [join(dir, 'absent.py'), 'not found']]) {
      const { report, stderr } = run(dir, script);
      assert.equal(report.py_ref_fps, null);
      assert.equal(report.js_vs_ref, null);
      assert.ok(report.js_component_fps > 0);
      assert.match(stderr, /--python-ref skipped/);
      assert.ok(stderr.includes(why), stderr);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
