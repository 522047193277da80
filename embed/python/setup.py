"""Only a guard; the metadata is in pyproject.toml.

A wheel without relay_wasm/relay.wasm would install and then fail at the first
Relay(): refuse to build one.  Stage the component first (stage_wasm.py), or set
RELAY_WASM_ALLOW_MISSING=1 to build a package that loads it from $RELAY_WASM.
Editable installs are exempt: in a checkout the cargo build is found directly."""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WASM = Path(__file__).resolve().parent / "relay_wasm" / "relay.wasm"


class BuildPyWithComponent(build_py):
    def run(self):
        if (not getattr(self, "editable_mode", False) and not WASM.is_file()
                and not os.environ.get("RELAY_WASM_ALLOW_MISSING")):
            raise SystemExit(
                f"{WASM} is missing: stage the component first with "
                "`python3 embed/python/stage_wasm.py` (after `cargo build --release -p relay-host`)")
        super().run()


setup(cmdclass={"build_py": BuildPyWithComponent})
