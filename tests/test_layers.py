"""The import structure: one installed name (vrft) for the four packages, each folder of which is
packaged, and no import of a bare top-level name that PyPI gives to another project."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES = ("rollout", "learner", "verifiers", "orchestrator")


def python_files() -> list[Path]:
    """Every Python file of the project: the packages, vrft/, tests, benchmarks, configs."""
    done = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in done.stdout.split()]


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, absolute name) of each import in a file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from vrft.orchestrator import train` imports the module vrft.orchestrator.train
            out += [(node.lineno, node.module), *((node.lineno, f"{node.module}.{a.name}") for a in node.names)]
    return out


def test_pyproject_packages_every_folder_under_vrft():
    # setuptools maps only the folders it is told of: a sub-package missing from the list would be
    # left out of a wheel while the editable install (and so every test here) still finds it.
    mapping = PYPROJECT["package-dir"]
    on_disk = {"vrft"}
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *rel)))
    assert set(PYPROJECT["packages"]) == on_disk
    assert all(p == "vrft" or p.startswith("vrft.") for p in PYPROJECT["packages"])
    assert sorted(mapping) == ["vrft", *(f"vrft.{p}" for p in sorted(PACKAGES))]


def test_no_bare_import_of_a_package_name():
    # `import verifiers` would load PyPI's verifiers where it is installed (or ours a second time,
    # under another name, from a checkout on sys.path): every import goes through vrft.
    bare = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in python_files()
            for line, name in imported_names(path) if name.split(".")[0] in PACKAGES]
    assert bare == []


def test_bare_names_do_not_resolve_to_this_repo(tmp_path):
    # From outside the checkout (no repo folder on sys.path: PYTHONPATH left out), in the project's venv.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import importlib.util, sys\n"
            f"for name in {PACKAGES!r}:\n"
            "    spec = importlib.util.find_spec(name)\n"
            "    print(name, spec.origin if spec else None)\n"
            "import vrft.orchestrator.cli.main, vrft.verifiers\n"
            "print('vrft', vrft.verifiers.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env=env)
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    for name in PACKAGES:
        assert found[name] == "None" or not found[name].startswith(str(ROOT)), (name, found[name])
    assert found["vrft"] == str(ROOT / "verifiers" / "__init__.py")


def test_a_checkout_imports_without_an_install(tmp_path):
    # What a `ray job submit` working dir and the GPU check rely on: the repo root on PYTHONPATH, no
    # install of the project. The editable install's finder is taken off first, so only
    # vrft/__init__.py can make vrft.verifiers resolve to the folder beside it.
    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in f.__module__]\n"
            "import vrft.verifiers.composite as c\n"
            "print(c.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(ROOT / "verifiers" / "composite.py")


# orchestrator's layers, bottom first. A module may import its own layer and any layer of a lower
# tier; layers that share a tier do not import each other. Adding a layer means placing it here.
TIERS = [("core",), ("config",), ("data", "runtime", "observe"), ("evaluation",), ("train",), ("cli",)]
TIER = {layer: n for n, layers in enumerate(TIERS) for layer in layers}


def test_orchestrator_is_layers_only():
    loose = sorted(p.name for p in (ROOT / "orchestrator").glob("*.py") if p.name != "__init__.py")
    assert loose == [], "orchestrator/ holds layer sub-packages only"
    layers = {p.name for p in (ROOT / "orchestrator").iterdir() if (p / "__init__.py").is_file()}
    assert layers == set(TIER), layers ^ set(TIER)
    assert imported_names(ROOT / "orchestrator" / "__init__.py") == []


def owner(rel: Path) -> str:
    """Whose private names a file may use: its package's, its orchestrator layer's, or its vrft/ module's."""
    parts = rel.parts
    if parts[0] == "orchestrator" and len(parts) > 2:
        return f"orchestrator.{parts[1]}"
    if parts[0] == "vrft" and len(parts) > 1:
        return parts[1].removesuffix(".py")
    return parts[0]


def import_problem(rel: Path, name: str) -> str | None:
    """Why the file at `rel` (relative to the repo) may not import `name`; None when it may."""
    top = rel.parts[0]
    parts = name.split(".")
    if parts[0] != "vrft" or len(parts) < 2:
        return None
    private = next((part for part in parts[2:] if part.startswith("_") and part != "__init__"), None)
    theirs = f"orchestrator.{parts[2]}" if parts[1] == "orchestrator" and len(parts) > 3 else parts[1]
    if private and top in (*PACKAGES, "vrft") and owner(rel) != theirs:
        # a leading underscore is the owning package's (or layer's) to change: others reach its public names
        return f"private to {theirs}"
    if parts[1] == "testing" and top in (*PACKAGES, "vrft") and rel.parts[:2] not in (
            ("orchestrator", "cli"), ("vrft", "testing")):
        # fixtures stay out of the product: only the CLI's make-* commands reach them
        return "only orchestrator/cli imports vrft.testing"
    if top in ("rollout", "learner", "verifiers") and parts[1] not in (top, "wire", "plugins"):
        # the three packages import nothing of each other's or the orchestrator's; below them all,
        # vrft/wire.py holds what the learner and the engines share of the weight transport and
        # vrft/plugins.py the loader of a user's own functions (rewards, tools)
        return f"{top} imports only itself, vrft.wire and vrft.plugins"
    if top == "verifiers" and rel.parts[1] != "evaluation" and parts[1:3] == ["verifiers", "evaluation"]:
        # the rewards a policy trains on never read the benchmarks' metrics, class lists or paper
        # numbers: evaluation may use the reward code, never the other way round
        return "the reward code does not import verifiers.evaluation"
    if rel.parts in (("vrft", "wire.py"), ("vrft", "plugins.py")):
        return f"vrft.{rel.stem} imports nothing of vrft"
    if top == "orchestrator" and len(rel.parts) > 2 and parts[1] == "orchestrator" and len(parts) > 2:
        mine, theirs = rel.parts[1], parts[2]
        if theirs != mine and TIER.get(theirs, len(TIERS)) >= TIER[mine]:
            return f"{mine} may not import {theirs}"
    return None


def upward_imports() -> list[str]:
    """Every import that breaks the layer order or the package rules, as 'file:line: name (why)'."""
    wrong = []
    for path in python_files():
        rel = path.relative_to(ROOT)
        for line, name in imported_names(path):
            why = import_problem(rel, name)
            if why is not None:
                wrong.append(f"{rel}:{line}: {name} ({why})")
    return wrong


@pytest.mark.parametrize("file, name, why", [
    ("orchestrator/data/prompts.py", "vrft.verifiers.answers._inner", "private to verifiers"),
    ("orchestrator/observe/alarms.py", "vrft.orchestrator.core.ground_truth._inner", "private to orchestrator.core"),
    ("vrft/testing/synthetic.py", "vrft.rollout.families._QWEN2_LAYOUT", "private to rollout"),
    ("rollout/worker.py", "vrft.wire._group", "private to wire"),
    ("orchestrator/data/prompts.py", "vrft.testing._rows", "private to testing"),
    ("orchestrator/core/tasks.py", "vrft.orchestrator.data.prompts", "core may not import data"),
    ("orchestrator/data/prompts.py", "vrft.orchestrator.observe.alarms", "data may not import observe"),
    ("verifiers/composite.py", "vrft.orchestrator.core.tasks", "verifiers imports only itself, vrft.wire and vrft.plugins"),
    ("rollout/tools.py", "vrft.verifiers.registry", "rollout imports only itself, vrft.wire and vrft.plugins"),
    ("vrft/plugins.py", "vrft.rollout.tools", "vrft.plugins imports nothing of vrft"),
    ("rollout/tools.py", "vrft.plugins", None),
    ("verifiers/composite.py", "vrft.verifiers.evaluation.benchmarks", "the reward code does not import verifiers.evaluation"),
    ("verifiers/evaluation/benchmarks.py", "vrft.verifiers.registry", None),
    ("orchestrator/train/loop.py", "vrft.testing.synthetic", "only orchestrator/cli imports vrft.testing"),
    # allowed: within a package or layer, down the layers, tests
    ("verifiers/rewards_grounding.py", "vrft.verifiers.rewards_detection._box", None),
    ("orchestrator/core/tasks.py", "vrft.orchestrator.core.ground_truth._inner", None),
    ("vrft/testing/released.py", "vrft.testing.synthetic._draw_shape", None),
    ("orchestrator/data/prompts.py", "vrft.orchestrator.core.tasks", None),
    ("orchestrator/cli/main.py", "vrft.testing.synthetic", None),
    ("tests/test_x.py", "vrft.verifiers.rewards_detection._match_greedy", None),
])
def test_the_import_rules_catch_what_they_name(file, name, why):
    # what the whole-repo test relies on: each rule fires on an import it forbids, and only there
    assert import_problem(Path(file), name) == why


def test_no_import_runs_up_the_layers():
    assert upward_imports() == []
