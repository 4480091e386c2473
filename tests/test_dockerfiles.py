"""Every Dockerfile passes hadolint and keeps the image rules: multi-stage, non-root, no compilers;
one Dockerfile builds any service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_DOCKERFILE = ROOT / "services" / "Dockerfile"
DOCKERFILES = [SERVICE_DOCKERFILE, ROOT / "operator" / "Dockerfile"]
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
    assert (dockerfile.parent / ".dockerignore").exists()


def test_no_service_has_a_dockerfile_of_its_own() -> None:
    """Adding a service is a folder and a map entry: services/Dockerfile builds it by name."""
    assert sorted(ROOT.glob("services/*/Dockerfile")) == []


def test_the_service_dockerfile_builds_the_named_service_and_runs_its_console_script() -> None:
    text = SERVICE_DOCKERFILE.read_text()
    build_stage, final_stage = text.split("\nFROM ")[1:]
    assert re.search(r"^ARG SERVICE$", build_stage, flags=re.MULTILINE)
    assert re.search(r"^ARG SERVICE$", final_stage, flags=re.MULTILINE)
    # Refuses to build without a name, before copying anything.
    assert build_stage.index('"" )') < build_stage.index("COPY")
    assert "COPY kit ./kit" in build_stage and "COPY ${SERVICE} ./${SERVICE}" in build_stage
    assert 'org.opencontainers.image.title="flotilla-${SERVICE}"' in final_stage
    assert 'org.opencontainers.image.version="${VERSION}"' in final_stage
    assert "exec flotilla-%s" in final_stage and 'command -v "flotilla-${SERVICE}"' in final_stage
    assert final_stage.rstrip().endswith('ENTRYPOINT ["/usr/local/bin/flotilla-service"]\nCMD ["serve"]')
