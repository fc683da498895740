"""Citations stay inside the repo: no file points at a document outside it, and every source key a
file cites (`docs/sources.md V3`) is an entry of docs/sources.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "docs" / "sources.md").read_text()


def tracked_text() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for name in names:
        try:
            out[name] = (ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # images; a file deleted in the working tree
    return out


def test_nothing_cites_a_file_outside_the_repo():
    outside = re.compile(r"\.\./shared|papers\.md|peers\.md|DESIGN\.md|shared/reference")
    hits = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for name, text in tracked_text().items() if name != "tests/test_citations.py"
            for m in outside.finditer(text)]
    assert hits == []


def test_every_cited_source_key_exists():
    keys = set(re.findall(r"^\| ([VR]\d) \|", SOURCES, re.M))
    assert {"V3", "R4"} <= keys
    cited = set()
    for text in tracked_text().values():
        for m in re.finditer(r"docs/sources\.md((?:[ ,]+(?:and )?[VR]\d(?:-[VR]\d)?)+)", text):
            for first, last in re.findall(r"([VR]\d)(?:-([VR]\d))?", m.group(1)):
                cited |= {first, last} - {""}
    assert cited and cited <= keys, cited - keys
