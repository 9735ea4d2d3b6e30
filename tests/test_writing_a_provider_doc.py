"""docs/writing-a-provider.md shows its example files exactly as they are.

Each code block there preceded by ``<!-- file: <path> -->`` must be that
file, byte for byte; so the page cannot drift from the code that the kit runs
against (tests/test_writing_a_provider.py).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "writing-a-provider.md"
EXAMPLES = {"tests/acme_provider.py", "tests/test_writing_a_provider.py"}
_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```python\n(?P<code>.*?)```\n", re.DOTALL)


def shown_files(doc: str) -> dict[str, str]:
    """``{path: code}`` for each marked block of ``doc``."""
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(doc):
        assert match["path"] not in found, f"{match['path']} is shown twice"
        found[match["path"]] = match["code"]
    return found


def differences(doc: str) -> list[str]:
    """The example files ``doc`` does not show exactly (or at all)."""
    shown = shown_files(doc)
    return sorted(
        path for path in EXAMPLES if shown.get(path) != (ROOT / path).read_text(encoding="utf-8")
    )


def test_the_doc_shows_both_example_files_exactly():
    doc = DOC.read_text(encoding="utf-8")
    assert set(shown_files(doc)) == EXAMPLES
    assert differences(doc) == []


def test_a_drifted_doc_is_noticed():
    doc = DOC.read_text(encoding="utf-8")
    # One character changed inside the provider's block, and the block dropped.
    changed = doc.replace('provider_name = "Acme SMS"', 'provider_name = "Acme  SMS"', 1)
    assert changed != doc
    assert differences(changed) == ["tests/acme_provider.py"]
    unmarked = doc.replace("<!-- file: tests/test_writing_a_provider.py -->\n", "", 1)
    assert differences(unmarked) == ["tests/test_writing_a_provider.py"]
