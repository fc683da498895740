"""The import structure: one installed name (vrft) for the four packages, each folder of which is
packaged, and no import of a bare top-level name that PyPI gives to another project."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES = ("rollout", "learner", "verifiers", "orchestrator")


def python_files() -> list[Path]:
    """Every Python file of the project: the packages, vrft/, tests, benchmarks, configs."""
    done = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in done.stdout.split()]


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of each import in a file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
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
    # From outside the checkout (no repo folder on sys.path), in the project's own venv.
    code = ("import importlib.util, sys\n"
            f"for name in {PACKAGES!r}:\n"
            "    spec = importlib.util.find_spec(name)\n"
            "    print(name, spec.origin if spec else None)\n"
            "import vrft.orchestrator.cli, vrft.verifiers\n"
            "print('vrft', vrft.verifiers.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
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
