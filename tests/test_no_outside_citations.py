"""The repository cites only what a user of the repository has.

The engineers keep working notes in a folder outside the repository (requirements,
design, provider research). A comment, docstring, doc or test that cites a path in
that folder sends a reader to a file they cannot open; what the code relies on
belongs in ``docs/`` (``docs/security.md``, ``docs/providers/<name>.md``) and is
cited from there.

Every git-tracked file and every untracked file git does not ignore is read, so a
new file is held to the rule before it is ever committed. The patterns are built
from pieces, so this file does not match them itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The notes folder: a path segment of that name followed by "/" (as in
# "<folder>/security.md" or "/work/<folder>/providers.md").
_FOLDER = "sha" + "red"
FOLDER_CITATION = re.compile(r"(?<![\w.-])" + _FOLDER + r"/[\w.-]")
# The names of the notes' files, cited bare. They count only while the
# repository has no file of that name to point at.
NOTE_FILES = ["DES" + "IGN.md", "sty" + "le.md", "provi" + "ders.md", "provider-" + "docs/"]


def repository_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the repository's files")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({ROOT / name for name in listing.split("\0") if name})


def text_of(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # deleted in the working tree, or a submodule
    if b"\0" in data[:8192]:
        return None  # binary (compiled catalogs, images)
    return data.decode("utf-8", "replace")


def citations(files: list[Path]) -> list[str]:
    names = {path.name for path in files}
    missing = [name for name in NOTE_FILES if name.rstrip("/") not in names]
    bare = re.compile(
        r"(?<![\w/.-])(?:" + "|".join(re.escape(name) for name in missing) + r")"
        if missing
        else r"(?!x)x"
    )
    found = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FOLDER_CITATION.search(line) or bare.search(line):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(f"{shown}:{number}: {line.strip()[:120]}")
    return found


def test_no_file_cites_the_engineers_notes():
    files = repository_files()
    assert len(files) > 50  # the listing really found the repository
    found = citations(files)
    assert found == [], (
        "these lines cite notes outside the repository; cite docs/ instead:\n" + "\n".join(found)
    )


def test_the_check_sees_a_citation(tmp_path):
    """The search finds both kinds of citation, and leaves docs/ paths alone."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        f'"""As {_FOLDER}/security.md item 8 says."""\n'
        f"# see {NOTE_FILES[0]} and /work/{_FOLDER}/{NOTE_FILES[2]}\n"
        "# docs/security.md item 8, docs/providers/gosms.md, a shared secret\n"
    )
    found = citations([sample])
    assert [line.split(":")[1] for line in found] == ["1", "2"]
