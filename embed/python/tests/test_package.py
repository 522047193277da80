"""The installed package: imported from outside the source tree, the component found
as package data with no environment variable, the two ``python -m`` tools."""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import relay_wasm

from support import SOURCE, VECTORS

PACKAGE_DIR = Path(relay_wasm.__file__).resolve().parent


def clean_env() -> dict:
    """No $RELAY_WASM; the same relay_wasm as this process imports."""
    env = {k: v for k, v in os.environ.items() if k not in ("RELAY_WASM", "PYTHONPATH")}
    if PACKAGE_DIR.is_relative_to(SOURCE.resolve()):  # RELAY_WASM_TESTS_FROM_SOURCE runs
        env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    return env


class InstalledPackage(unittest.TestCase):
    def test_imported_from_the_installation_not_the_source_tree(self) -> None:
        if os.environ.get("RELAY_WASM_TESTS_FROM_SOURCE"):
            self.skipTest("RELAY_WASM_TESTS_FROM_SOURCE is set")
        self.assertFalse(PACKAGE_DIR.is_relative_to(SOURCE.resolve()),
                         f"relay_wasm was imported from {PACKAGE_DIR}, the source tree: run the "
                         "tests from another directory with the venv's python (README)")

    def test_component_is_package_data(self) -> None:
        resource = importlib.resources.files("relay_wasm") / "relay.wasm"
        self.assertTrue(resource.is_file(), "relay.wasm is not in the package: stage_wasm.py")
        self.assertEqual(resource.read_bytes()[:4], b"\0asm")
        if "RELAY_WASM" not in os.environ:
            self.assertEqual(relay_wasm.default_wasm_path(), Path(str(resource)))

    def test_works_from_any_directory_without_environment(self) -> None:
        code = ("import relay_wasm; r = relay_wasm.Relay(); "
                "print(r.path); print(r.dial_url('https://c.example'))")
        with tempfile.TemporaryDirectory() as cwd:
            out = subprocess.run([sys.executable, "-P", "-c", code], cwd=cwd, env=clean_env(),
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        path, url = out.splitlines()
        self.assertEqual(url, "wss://c.example/relay")
        self.assertTrue(Path(path).resolve().is_relative_to(PACKAGE_DIR), path)

    def test_conform_module(self) -> None:
        with tempfile.TemporaryDirectory() as cwd:
            run = subprocess.run(
                [sys.executable, "-P", "-m", "relay_wasm.conform",
                 str(VECTORS / "dial_url.json"), str(VECTORS / "frames.json")],
                cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        last = run.stdout.strip().splitlines()[-1]
        self.assertRegex(last, r"^[1-9][0-9]* passed, 0 failed$")

    def test_bench_module_writes_py_component_fps(self) -> None:
        lines = [json.dumps({"type": "inbound", "event": {
            "text": f"hello {i}", "message_id": f"m{i}",
            "source": {"platform": "discord", "chat_id": "c1", "user_id": "u1"}}})
            for i in range(50)]
        with tempfile.TemporaryDirectory() as cwd:
            corpus, out = Path(cwd, "corpus.ndjson"), Path(cwd, "bench.json")
            corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
            run = subprocess.run(
                [sys.executable, "-P", "-m", "relay_wasm.bench", "--corpus", str(corpus),
                 "--json", str(out), "--seconds", "0.2"],
                cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            report = json.loads(out.read_text(encoding="utf-8"))
        self.assertGreater(report["py_component_fps"], 0)
        self.assertEqual(report["corpus"]["frames"], 50)
        self.assertNotIn("py_ref_fps", report)  # only with --python-ref

    def test_bench_module_python_ref_reports_the_reference_and_the_ratio(self) -> None:
        lines = [json.dumps({"type": "inbound", "event": {
            "text": f"hello {i}", "message_id": f"m{i}",
            "source": {"platform": "discord", "chat_id": "c1", "user_id": "u1"}}})
            for i in range(50)]
        # Stand-ins for ../shared/bench/py_reference.py: its output contract (the last
        # stdout line), one that fails, and a path that does not exist.
        scripts = {
            "ok.py": "import sys; assert sys.argv[2:] == ['--runs', '3'], sys.argv\n"
                     "print('warming up')\n"
                     "print('{\"py_ref_fps\": 1000.0, \"py_json_floor_fps\": 4000.0, \"frames\": 50}')\n",
            "fails.py": "import sys; sys.exit('no reference modules here')\n",
        }
        with tempfile.TemporaryDirectory() as cwd:
            corpus = Path(cwd, "corpus.ndjson")
            corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
            for name, text in scripts.items():
                Path(cwd, name).write_text(text, encoding="utf-8")
            reports = {}
            for name in ("ok.py", "fails.py", "absent.py"):
                out = Path(cwd, f"{name}.json")
                run = subprocess.run(
                    [sys.executable, "-P", "-m", "relay_wasm.bench", "--corpus", str(corpus),
                     "--json", str(out), "--seconds", "0.2", "--python-ref", str(Path(cwd, name))],
                    cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120)
                self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
                reports[name] = (json.loads(out.read_text(encoding="utf-8")), run.stderr)
        ok, _ = reports["ok.py"]
        self.assertEqual((ok["py_ref_fps"], ok["py_json_floor_fps"]), (1000.0, 4000.0))
        self.assertAlmostEqual(ok["py_component_vs_ref"], ok["py_component_fps"] / 1000.0)
        for name, why in (("fails.py", "no reference modules here"), ("absent.py", "not found")):
            report, stderr = reports[name]
            self.assertIsNone(report["py_ref_fps"], name)
            self.assertIsNone(report["py_component_vs_ref"], name)
            self.assertGreater(report["py_component_fps"], 0, name)
            self.assertIn(why, report["note"], name)
            self.assertIn("--python-ref skipped", stderr, name)


if __name__ == "__main__":
    unittest.main()
