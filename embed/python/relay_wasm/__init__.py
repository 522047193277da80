"""relay-wasm from Python: the relay component (``wit/relay.wit``) under wasmtime-py.

* :class:`Relay` — one sandboxed instance: the stateless codec functions.
* :class:`Connection` — the sans-IO ``connection`` resource; methods return effects
  as plain tuples (``("send", line)``, ``("emit", event)``, ...).
* :mod:`relay_wasm.driver` — an asyncio host that performs those effects with the
  ``websockets`` package (imported lazily, so the core needs only ``wasmtime``).

All protocol decisions stay inside the component; this package only moves values.
"""

from .component import Connection, DecodeError, Relay, default_wasm_path

__all__ = ["Relay", "Connection", "DecodeError", "default_wasm_path"]
