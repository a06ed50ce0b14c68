"""Write docs/configuration.md from the settings model, so the two cannot drift.

.venv/bin/python scripts/gen_config_docs.py          # rewrite the file
.venv/bin/python scripts/gen_config_docs.py --check  # exit 1 if it is stale (the tests do)
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from camserver.cli import FLAGS
from camserver.config import Settings, setting_names

OUT = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

HEAD = """# Configuration

Every setting is an environment variable (`CAMSERVER_` + the name in capitals); some are
also flags of `camserver serve` (flags win over variables). `camserver config` prints the
effective value of each and where it came from. Secrets are never printed.

This file is generated from `camserver.config.Settings` by `scripts/gen_config_docs.py`;
a test fails when it is stale.

| setting | environment variable | flag | default | meaning |
|---|---|---|---|---|
"""


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        if name == "db":
            return "`camserver.db` in the per-user data folder"
        return "(computed)"
    value = field.default
    if value is PydanticUndefined or value is None:
        return "(not set)"
    if value == "" or (isinstance(value, SecretStr) and not value.get_secret_value()):
        return "(empty)"
    return f"`{value}`"


def render() -> str:
    rows = []
    for name in setting_names():
        field = Settings.model_fields[name]
        flag = f"`{FLAGS[name]}`" if name in FLAGS else ""
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{name}` | `CAMSERVER_{name.upper()}` | {flag} | {_default(name)} | {meaning} |"
        )
    return HEAD + "\n".join(rows) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
