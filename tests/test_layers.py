"""The layering the README states: each layer imports only from the layers below it."""
import ast
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> the adafocus packages its modules may import (besides their own)
ALLOWED = {
    "backbones": set(),
    "data": {"adafocus.backbones"},
    "envs": {"adafocus.backbones", "adafocus.data"},
    "agents": {"adafocus.backbones", "adafocus.data", "adafocus.envs"},
}
PACKAGE = {"backbones": "adafocus.backbones", "data": "adafocus.data", "envs": "adafocus.envs", "agents": "adafocus.agents"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "adafocus" or name.startswith("adafocus.")}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_layer_imports_only_from_below(folder):
    own = PACKAGE[folder]
    for path in sorted((ROOT / folder).rglob("*.py")):
        for module in _imports(path):
            if module == own or module.startswith(own + "."):
                continue
            assert any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED[folder]), \
                f"{path.relative_to(ROOT)} imports {module}, above its layer"


def test_importing_the_envs_loads_nothing_above_them():
    code = ("import sys, adafocus.envs; "
            "print(sorted(m for m in sys.modules if m.startswith(('adafocus.', 'matplotlib')) "
            "and not m.startswith(('adafocus.envs', 'adafocus.backbones', 'adafocus.data'))))")
    above = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert above == "[]", above


def test_registered_ids_point_at_the_top_layer():
    import adafocus  # noqa: F401  (registers the ids)

    for env_id in ("AdaFocus-v0", "AdaFocusTSM-v0", "AdaFocusPlus-v0", "AdaFrame-v0", "MultiAgent-v0"):
        entry = gymnasium.registry[env_id].entry_point
        assert entry.split(":")[0] in ("adafocus.presets", "adafocus.frame_training"), (env_id, entry)
