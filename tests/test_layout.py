"""The package layout: one `reflexdrive` namespace, whatever else is installed beside it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import gymnasium as gym
from reflexdrive.envs.scenarios import SCENARIOS

import reflexdrive

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"reflexdrive": "reflexdrive", "reflexdrive.agents": "agents",
           "reflexdrive.envs": "envs", "reflexdrive.policies": "policies"}
BARE = ("agents", "envs", "policies")


def _python_files() -> list[Path]:
    folders = [*FOLDERS.values(), "tests", "scripts"]
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_no_module_imports_a_bare_agents_envs_or_policies():
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names
                          if name.split(".")[0] in BARE]
    assert offenders == []


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == FOLDERS
    found = set()
    for package, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *parts)))
    assert sorted(config["packages"]) == sorted(found)


def test_the_public_way_to_write_a_stack():
    from reflexdrive.agents.base import Agent as BaseAgent
    from reflexdrive.agents.base import Decision as BaseDecision

    from reflexdrive import Agent, Decision

    assert (Agent, Decision) == (BaseAgent, BaseDecision)
    assert "Agent" in reflexdrive.__all__ and "Decision" in reflexdrive.__all__


def _foreign_packages(where: Path) -> Path:
    """Packages named `agents`, `envs` and `policies` that are not ours (as other
    distributions install them: the OpenAI Agents SDK ships a top-level `agents`)."""
    for name in BARE:
        (where / name).mkdir(parents=True)
        (where / name / "__init__.py").write_text(
            "FOREIGN = True\n")
        (where / name / "registration.py").write_text(
            "raise ImportError('the foreign package was imported')\n")
    return where


def test_foreign_agents_envs_policies_first_on_the_path_change_nothing(tmp_path):
    foreign = _foreign_packages(tmp_path / "foreign")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(foreign),
                                                        os.environ.get("PYTHONPATH", "")])}
    ids = [spec.env_id for spec in SCENARIOS.values()]
    vector_ids = [spec.env_id for spec in SCENARIOS.values() if spec.straight]
    script = (
        "import sys, gymnasium as gym, reflexdrive\n"
        "import agents, envs, policies\n"
        "assert agents.FOREIGN and envs.FOREIGN and policies.FOREIGN\n"
        f"for env_id in {ids!r}:\n"
        "    gym.make(env_id).close()\n"
        f"for env_id in {vector_ids!r}:\n"
        "    gym.make_vec(env_id, num_envs=2, vectorization_mode='vector_entry_point').close()\n"
        "print('made', len(sys.argv))\n")
    made = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([sys.executable, "-m", "reflexdrive.cli", "scenarios"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "lead-brake" in listed.stdout
    ran = subprocess.run([sys.executable, "-m", "reflexdrive.cli", "run", "--scenario",
                          "lead-brake", "--episodes", "1", "--backend", "batched",
                          "--no-progress", "--out", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "run" / "episodes.csv").exists()


def test_every_env_id_is_registered_under_the_namespace():
    for spec in SCENARIOS.values():
        assert gym.spec(spec.env_id).entry_point.startswith("reflexdrive.envs.")


LAYERS = {
    # layer: (its folder, the layers it may import besides itself)
    "reflexdrive.common": ("reflexdrive/common", ()),
    "reflexdrive.envs": ("envs", ("reflexdrive.common",)),
    "reflexdrive.policies": ("policies", ("reflexdrive.common",)),
    "reflexdrive.agents": ("agents", ("reflexdrive.common", "reflexdrive.envs",
                                      "reflexdrive.policies")),
}


def _layer_of(module: str) -> str:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "reflexdrive"            # the app layer: reflexdrive itself and its job folders


def test_imports_point_down_only():
    offenders = []
    for layer, (folder, allowed) in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] != "reflexdrive":
                        continue
                    target = _layer_of(name)
                    if target != layer and target not in allowed:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []
