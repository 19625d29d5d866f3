"""The documentation stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from voxgate.config import Settings
from voxgate.errors import CODES

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "voxgate"


def test_every_error_code_is_documented_with_its_status() -> None:
    doc = (ROOT / "docs" / "errors.md").read_text()
    for code in CODES.values():
        row = re.search(rf"^\| `{code.code}` \| (\d+) \|", doc, re.M)
        assert row, f"{code.code} is missing from docs/errors.md"
        assert int(row.group(1)) == code.status, f"{code.code}: documented status differs"


def test_every_warning_is_documented() -> None:
    doc = (ROOT / "docs" / "errors.md").read_text()
    emitted = set()
    for path in SRC.rglob("*.py"):
        emitted |= set(re.findall(r'Notice\(\s*"([a-z_]+)"', path.read_text()))
    assert emitted, "no warnings found; the scan is broken"
    for code in emitted:
        assert f"| `{code}` |" in doc, f"warning {code} is missing from docs/errors.md"


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`VOXGATE_{name.upper()}`" in doc, f"VOXGATE_{name.upper()} is not documented"


def test_readme_quickstart_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart\s+```bash\n(.*?)```", readme, re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make serve", "make test"]
