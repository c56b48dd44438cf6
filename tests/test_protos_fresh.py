"""The committed generated code in gateway/_proto is exactly what scripts/gen_protos.sh makes
from protos/ now."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
    )
    committed = ROOT / "gateway" / "_proto"
    assert _files(tmp_path) == _files(committed)
    stale = [
        name
        for name in sorted(_files(tmp_path))
        if not filecmp.cmp(tmp_path / name, committed / name, shallow=False)
    ]
    assert stale == [], "run scripts/gen_protos.sh and commit the result"
