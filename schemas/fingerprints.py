"""Fingerprints of every registered message: a change without a new version fails the tests.

``python -m schemas.fingerprints --write`` records the current fingerprints after a deliberate,
versioned change (a new class or a new ``v``). Editing an existing (kind, v) is refused by the tests.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from schemas.base import REGISTRY, Message

FINGERPRINT_FILE = Path(__file__).with_name("fingerprints.json")


def _wire_only(node: Any) -> Any:
    """Drop prose (titles, descriptions): renaming a class or editing a docstring is not a change."""
    if isinstance(node, dict):
        return {k: _wire_only(v) for k, v in node.items() if k not in ("title", "description")}
    if isinstance(node, list):
        return [_wire_only(item) for item in node]
    return node


def fingerprint(cls: type[Message]) -> str:
    return fingerprint_schema(cls.model_json_schema(mode="validation"))


def fingerprint_schema(schema: dict[str, Any]) -> str:
    """sha256 of a JSON schema, prose dropped, in canonical form (sorted keys, no whitespace)."""
    canonical = json.dumps(_wire_only(schema), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def current() -> dict[str, str]:
    import schemas  # noqa: F401  (importing the package registers every message module)

    return {
        f"{kind}@v{v}": fingerprint(cls)
        for (kind, v), cls in REGISTRY.items()
        if cls.__module__.startswith("schemas.")  # test-only messages are not the contract
    }


def committed() -> dict[str, str]:
    if not FINGERPRINT_FILE.exists():
        return {}
    data: dict[str, str] = json.loads(FINGERPRINT_FILE.read_text())
    return data


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        merged = {**committed(), **current()}
        FINGERPRINT_FILE.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(merged)} fingerprints to {FINGERPRINT_FILE}")
        return 0
    print(json.dumps(current(), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
