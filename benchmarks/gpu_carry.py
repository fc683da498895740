"""What the one-GPU check carries and installs (benchmarks/gpu_check.sh); standard library and
`packaging` only, so the GPU machine's own Python runs it before anything is installed.

    python3 benchmarks/gpu_carry.py list WHEELS           what a device run carries, sizes, total
    python3 benchmarks/gpu_carry.py missing WHEELS        the wheels this Python lacks (one a line)
    python3 benchmarks/gpu_carry.py install TARGET WHL..  pip --no-index --no-deps --target, checked

`list` exits 3 when the total is over the device tool's 64 MiB. `missing` names a wheel when its
distribution is absent or older than the wheel: the machine's own packages (torch, transformers,
numpy, ...) are never replaced, and on a full environment (the project's .venv) nothing is.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

LIMIT_MIB = 64.0
MiB = 2**20


def tree_files(root: Path) -> list[Path]:
    """What the device tool copies of the repository: tracked files and untracked ones git does
    not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return [root / name for name in dict.fromkeys(out.split("\0")) if name and (root / name).is_file()]


def wheels(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def name_version(wheel: Path) -> tuple[str, str]:
    name, version = wheel.name.split("-")[:2]
    return name, version


def list_carry(folder: Path, root: Path) -> int:
    files = tree_files(root)
    tree = sum(f.stat().st_size for f in files)
    print(f"carry: working tree: {len(files)} files, {tree / MiB:.2f} MiB (tracked + untracked, not ignored)")
    found = wheels(folder)
    if not found:
        print(f"carry: no wheels in {folder}: run `make gpu-wheels` before a device run")
    for wheel in found:
        print(f"carry: {wheel.relative_to(root) if wheel.is_relative_to(root) else wheel}: "
              f"{wheel.stat().st_size / MiB:.2f} MiB")
    total = (tree + sum(w.stat().st_size for w in found)) / MiB
    over = total > LIMIT_MIB
    print(f"carry: total {total:.2f} MiB of {LIMIT_MIB:g} MiB{' - OVER THE LIMIT' if over else ''}")
    return 3 if over else 0


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing(folder: Path) -> list[Path]:
    from packaging.version import Version

    need = []
    for wheel in wheels(folder):
        name, version = name_version(wheel)
        have = installed_version(name)
        if have is None or Version(have) < Version(version):
            need.append(wheel)
    return need


def install(target: Path, paths: list[Path]) -> int:
    """Into `target` with pip (unpacked by hand where this Python has no pip), then each must
    resolve from there, at the wheel's version, with `target` first on sys.path."""
    target.mkdir(parents=True, exist_ok=True)
    has_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
    if has_pip:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--disable-pip-version-check", "--target", str(target), *map(str, paths)], check=True)
    else:
        for wheel in paths:  # the packages sit at a wheel's root; its .data (scripts) is not needed
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(target, [n for n in zf.namelist() if not n.split("/")[0].endswith(".data")])
    check = ("import importlib.metadata as m, sys\n"
             "for arg in sys.argv[2:]:\n"
             "    name, version = arg.split('=')\n"
             "    got = m.distribution(name)\n"
             "    where = str(got.locate_file(''))\n"
             "    assert got.version == version and where == sys.argv[1], (name, got.version, where)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", check, str(target), *("=".join(name_version(p)) for p in paths)],
                            env=env, capture_output=True, text=True)
    if result.returncode:
        print(f"gpu_carry: installed, but not resolved from {target}:\n{result.stderr.strip()}", file=sys.stderr)
    return result.returncode


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("list", "missing", "install"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    if argv[0] == "list":
        return list_carry(Path(argv[1]).resolve(), root)
    if argv[0] == "missing":
        print("\n".join(map(str, missing(Path(argv[1])))))
        return 0
    return install(Path(argv[1]), [Path(p) for p in argv[2:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
