"""Each actor's own output (third-party progress bars, DeepSpeed's build lines, library warnings)
in RUN_DIR/logs/<actor>.log, kept off the console and shown only when that actor fails.

How: Ray already gives every worker process its own pair of files, `worker-<id>-<job>-<pid>.out` and
`.err`, in the session's log folder, whatever writes to them (Python, C++ libraries, a compiler a
library runs). A local run starts Ray with `log_to_driver=False` (cluster.py), which stops Ray
copying those lines to the driver's console (with its coloured `(Actor pid=N)` prefixes and its
"[repeated Nx across cluster]" notices); nothing else changes. `ActorLogs` knows which actor is
which pid and copies each one's pair into the run folder when the run ends or the actor fails.
Ray's files are on the node that ran the actor: for an actor on another node of a joined cluster the
copy says so, and Ray's dashboard has its log.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("vrft")

TAIL_LINES = 20
_RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:")  # Ray's own bookkeeping lines in the files
_PID = re.compile(r"\bpid[=: ]+(\d+)")


def ray_logs_dir() -> Path | None:
    """This node's folder of Ray worker logs (None when Ray is not running here)."""
    import ray

    if not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    return Path(ctx.get_temp_dir()) / ctx.get_session_name() / "logs"


def actor_output(source: Path | None, pid: int) -> str | None:
    """What process `pid` wrote, stdout then stderr, Ray's bookkeeping lines left out; None where
    this node has no file of that pid."""
    if source is None:
        return None
    parts = []
    for suffix in ("out", "err"):
        for path in sorted(source.glob(f"worker-*-{pid}.{suffix}")):
            text = path.read_text(errors="replace")
            parts.append("".join(line for line in text.splitlines(keepends=True)
                                 if not line.startswith(_RAY_MARKERS)))
    return "".join(parts) if parts else None


def last_lines(text: str, n: int = TAIL_LINES) -> list[str]:
    """The last `n` lines as a terminal would show them: a progress bar's `\\r` redraws collapse
    to their final state, blank lines dropped."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return [line for line in lines if line.strip()][-n:]


class ActorLogs:
    """The actors of a run by name and pid, and their output in `RUN_DIR/logs/`."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "logs"
        self.pids: dict[str, int] = {}
        self.source: Path | None = None

    def add(self, name: str, pid: int | None) -> None:
        """Name an actor's process. A name seen before with another pid (a replaced worker) keeps
        both: the newer one as `name-pid<N>`."""
        if pid is None:
            return
        if self.source is None:
            self.source = ray_logs_dir()
        if name in self.pids and self.pids[name] != pid:
            name = f"{name}-pid{pid}"
        self.pids[name] = pid

    def save(self, name: str) -> Path | None:
        """Copy actor `name`'s output to logs/<name>.log (again: the file grows while it runs)."""
        text = actor_output(self.source, self.pids[name])
        if text is None:
            text = (f"(no output of pid {self.pids[name]} on this node: on a joined cluster the actor may "
                    "have run on another node; Ray's dashboard has its log)\n")
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{name}.log"
        path.write_text(text)
        return path

    def save_all(self) -> None:
        """Every actor's output into logs/; a failure to copy is a warning, never the run's end."""
        for name in list(self.pids):
            try:
                self.save(name)
            except OSError as err:
                log.warning("logs/%s.log not written: %s", name, err)

    def culprit(self, err: BaseException) -> str | None:
        """The actor an error names: by a registered name in its text, else by a pid (an actor that
        failed before it was registered gets `actor-pid<N>`). The error's causes are read too (a
        one-line RunStopped raised `from None` keeps Ray's error as its context)."""
        texts, seen = [], err
        while seen is not None and len(texts) < 5:
            texts.append(str(seen))
            pid = getattr(seen, "pid", None)
            if isinstance(pid, int):
                texts.append(f"pid {pid}")
            seen = seen.__cause__ or seen.__context__
        text = "\n".join(texts)
        for name, pid in self.pids.items():
            if re.search(rf"\bpid[=: ]+{pid}\b", text):
                return name
        spoken = {name.replace("-", " "): name for name in self.pids}
        for words, name in spoken.items():
            if words in text:
                return name
        for match in _PID.finditer(text):
            pid = int(match.group(1))
            if actor_output(self.source or ray_logs_dir(), pid) is not None:
                self.add(f"actor-pid{pid}", pid)
                return f"actor-pid{pid}"
        return None

    def failure_tail(self, err: BaseException, n: int = TAIL_LINES) -> str | None:
        """For the actor `err` names: its last `n` lines and where its whole output is; None when no
        actor is named or it wrote nothing."""
        name = self.culprit(err)
        if name is None:
            return None
        path = self.save(name)
        lines = last_lines(path.read_text(), n)
        if not lines:
            return f"{name} wrote nothing ({path})"
        return f"{name}: its last {len(lines)} lines ({path}):\n" + "\n".join(f"  | {line}" for line in lines)
