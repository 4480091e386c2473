"""Every Dockerfile passes hadolint and keeps the image rules: multi-stage, non-root, no compilers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted([*ROOT.glob("services/*/Dockerfile"), ROOT / "operator" / "Dockerfile"])
# Images of the local node only (make up), not published: hadolint checks them too.
NODE_DOCKERFILES = sorted(ROOT.glob("scripts/cluster/images/*/Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"


@pytest.mark.parametrize("dockerfile", DOCKERFILES + NODE_DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run([str(HADOLINT), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_images_are_multi_stage_non_root_and_parametrised(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert text.startswith("#") and "ARG PYTHON_IMAGE=" in text
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) == 2
    assert re.search(r"^USER 10001:10001$", text, flags=re.MULTILINE)
    assert "org.opencontainers.image.source" in text
    final_stage = text.split("\nFROM ")[-1]
    assert "pip wheel" not in final_stage and "gcc" not in final_stage
    assert (dockerfile.parent.parent / ".dockerignore").exists() or (
        dockerfile.parent / ".dockerignore"
    ).exists()
