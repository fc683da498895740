"""``VerifierPool``: Ray actors that score completions as they arrive, with a hard per-completion
timeout, and that lose no completion when an actor dies.

Design
------
Driver (the process that owns the pool): ``submit`` puts ``(key, completion, ground_truth, route)`` on a
queue and, if an actor has a free slot, sends it at once. A dispatcher thread waits on the in-flight
calls (``ray.wait``), records results and sends queued work as slots free up. Each actor takes up to
``max_inflight_per_actor`` calls (so the next batch is already queued on the actor while one is
scored), each of up to ``batch_size`` completions; batches are small when the pool is idle (low
latency) and grow under load (throughput).

Timeout: each actor owns a child scoring process (``vrft.verifiers.sandbox.Sandbox``) and feeds it the
batch. The actor waits for each result with a deadline of ``timeout_s`` from the moment the child
started that completion; on expiry it SIGKILLs the child, scores that completion 0 (every
component, counted in ``verifier/timeouts``) and continues the rest of the batch on a fresh child.
Because the kill comes from another process, the timeout holds for anything: a busy loop, a reward
stuck in C code, a catastrophic regex, a ``time.sleep``. The child's main thread also runs
math-verify under a working SIGALRM timer, so a slow sympy call costs only that reward: each
completion's math-verify calls share a budget of ``vrft.verifiers.budget.FRACTION`` of ``timeout_s``, inputs
too costly to decide are refused unparsed, and either is counted in ``verifier/timeouts`` too.

Lost actors: a call whose actor died (``ray.kill``, SIGKILL, OOM, node loss) fails with an actor
error; the dispatcher replaces the actor (``verifier/restarts``) and puts that call's completions
back at the front of the queue (``verifier/resubmitted``). A watchdog does the same for a call that
overruns any possible legitimate duration (a wedged actor). Results are recorded only from
successful returns and at most once per key, so no completion is lost and none is counted twice.
A completion whose actors die ``max_attempts`` times is scored 0 and counted as an error.

Errors: a component that raises (a user reward, or a built-in given a malformed ground truth) scores
0 and is counted in ``verifier/errors`` (recent messages: ``recent_errors()``); a child that dies on
a completion (segfault, ``os._exit``) scores it 0 as an error and is replaced.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Hashable, Sequence
from typing import Any

from vrft.verifiers.composite import RewardSpec, RoutedReward, Routes, as_routes, component_keys
from vrft.verifiers.sandbox import STARTUP_TIMEOUT_S, Sandbox

_log = logging.getLogger(__name__)

Item = tuple[Hashable, str, dict, str]  # (key, completion, ground_truth, route); any hashable key


class VerifierActor:
    """The Ray actor body: one child scoring process, fed batches. (Wrapped with ``ray.remote`` by the
    pool.)"""

    def __init__(self, routes: dict[str, list[dict]], timeout_s: float, sys_path: list[str]) -> None:
        self._timeout_s = timeout_s
        # Only the keys: user reward modules are imported in the child, never in the actor.
        self._zeros = {route: dict.fromkeys([*component_keys(specs), "total"], 0.0)
                       for route, specs in routes.items()}
        self._box = Sandbox(routes, sys_path=sys_path)
        self._box.start()  # begin importing now; the first batch waits for it

    def score(self, batch: list[Item]) -> tuple[list[tuple[str, dict, str, list[str], float]], int]:
        """Score a batch: ``[(key, scores, status, errors, seconds)]`` and the number of child restarts
        it took. ``status`` is ``ok``, ``timeout`` or ``crash``."""
        before = self._box.restarts
        outcomes = self._box.score([(c, gt, route) for _, c, gt, route in batch], self._timeout_s)
        out = []
        for (key, _, _, route), (status, scores, errors, seconds) in zip(batch, outcomes, strict=True):
            zeros = self._zeros.get(route, {"total": 0.0})
            out.append((key, scores if scores is not None else dict(zeros), status, errors, seconds))
        return out, self._box.restarts - before

    def pids(self) -> dict[str, int | None]:
        """Process ids of the actor and its scoring child (for tests and debugging)."""
        self._box.start()
        return {"actor": os.getpid(), "child": self._box.pid}


class _Call:
    __slots__ = ("slot", "gen", "items", "deadline")

    def __init__(self, slot: int, gen: int, items: list[Item], deadline: float) -> None:
        self.slot, self.gen, self.items, self.deadline = slot, gen, items, deadline


class VerifierPool:
    """A pool of verifier actors. Needs ``ray.init()`` to have been called.

    ``submit(key, completion, ground_truth, route="")`` returns at once; ``gather(keys)`` blocks until
    those keys are scored and returns each exactly once as ``{component: score, ..., "total": ...}``.
    ``specs`` is one composition, or several by route name (``{task: specs}``): each completion is then
    scored by the composition its ``route`` names.
    """

    def __init__(
        self,
        specs: Sequence[RewardSpec | dict[str, Any]] | Routes,
        num_actors: int = 2,
        timeout_s: float = 5.0,
        *,
        batch_size: int = 32,
        max_inflight_per_actor: int = 2,
        max_attempts: int = 3,
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("VerifierPool needs Ray: call ray.init() before creating the pool")
        if num_actors < 1:
            raise ValueError(f"num_actors must be >= 1, got {num_actors}")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s}")
        self._ray = ray
        self._composite = RoutedReward(specs)  # fails here on a bad config
        self._spec_dicts = {route: [s.model_dump() for s in specs] for route, specs in as_routes(specs).items()}
        self._timeout_s = float(timeout_s)
        self._batch_size = max(1, int(batch_size))
        self._per_actor = max(1, int(max_inflight_per_actor))
        self._max_attempts = max(1, int(max_attempts))
        # num_cpus=0: verifier actors must never block the rollout/learner actors from being
        # scheduled on a small machine; pass actor_options={"num_cpus": 1} to reserve cores.
        opts = {"num_cpus": 0, "max_restarts": 0, **(actor_options or {})}
        self._actor_cls = ray.remote(VerifierActor).options(**opts)
        self._sys_path = [p for p in sys.path if p]

        self._cv = threading.Condition()
        self._queue: collections.deque[Item] = collections.deque()
        self._inflight: dict[Any, _Call] = {}  # ObjectRef -> call
        self._load = [0] * num_actors  # calls in flight per slot
        self._actors = [self._new_actor() for _ in range(num_actors)]
        self._gens = [0] * num_actors
        self._open: set[str] = set()  # submitted, not yet gathered
        self._results: dict[str, dict[str, float]] = {}
        self._attempts: dict[str, int] = {}
        self._errors: collections.deque[str] = collections.deque(maxlen=50)
        self._stats = dict.fromkeys(
            ("scored", "timeouts", "errors", "restarts", "process_restarts", "resubmitted"), 0
        )
        self._score_time = 0.0
        self._max_score_time = 0.0
        # Watchdog slack (tests shorten it to exercise the watchdog): a child start per call and a
        # restart per item on top of timeout_s.
        self._watchdog_base_s = STARTUP_TIMEOUT_S
        self._watchdog_item_s = 10.0
        self._closed = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="verifier-pool", daemon=True)
        self._thread.start()

    # ---- public API ----------------------------------------------------------------------------

    def submit(self, key: Hashable, completion: str, ground_truth: dict, route: str = "") -> None:
        """Queue one completion for scoring; starts on a free actor right away."""
        with self._cv:
            self._check_usable()
            if key in self._open:
                raise ValueError(f"key {key!r} is already submitted and not yet gathered")
            self._open.add(key)
            self._queue.append((key, completion, ground_truth, route))
            self._dispatch()
            self._cv.notify_all()

    def gather(self, keys: Sequence[Hashable], timeout: float | None = None) -> dict[Hashable, dict[str, float]]:
        """Block until every key is scored; return ``{key: scores}`` and forget those keys.

        Raises ``KeyError`` for a key never submitted (or already gathered), ``TimeoutError`` if
        ``timeout`` seconds pass first.
        """
        keys = list(keys)
        end = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            missing = [k for k in keys if k not in self._open]
            if missing:
                raise KeyError(f"not submitted or already gathered: {missing[:5]}")
            if len(set(keys)) != len(keys):
                raise ValueError("gather: duplicate keys")
            while True:
                if self._failure is not None:
                    raise RuntimeError("verifier pool dispatcher failed") from self._failure
                if all(k in self._results for k in keys):
                    break
                if self._closed:
                    raise RuntimeError("verifier pool was shut down")
                wait = None if end is None else end - time.monotonic()
                if wait is not None and wait <= 0:
                    raise TimeoutError(f"gather: {sum(k not in self._results for k in keys)} keys unscored")
                self._cv.wait(wait if wait is not None else 1.0)
            out = {k: self._results.pop(k) for k in keys}
            for k in keys:
                self._open.discard(k)
            return out

    def stats(self) -> dict[str, float]:
        """Cumulative counters since the pool started (``verifier/…``)."""
        with self._cv:
            s = {f"verifier/{k}": float(v) for k, v in self._stats.items()}
            s["verifier/pending"] = float(len(self._queue) + sum(len(c.items) for c in self._inflight.values()))
            s["verifier/actors"] = float(len(self._actors))
            n = self._stats["scored"]
            s["verifier/mean_score_s"] = self._score_time / n if n else 0.0
            s["verifier/max_score_s"] = self._max_score_time
            return s

    def recent_errors(self) -> list[str]:
        """The last few error messages (component errors, crashes, lost actors)."""
        with self._cv:
            return list(self._errors)

    def actors(self) -> list[Any]:
        """The current actor handles (tests kill them to check recovery)."""
        with self._cv:
            return list(self._actors)

    def shutdown(self) -> None:
        """Stop the dispatcher and kill the actors (their scoring children die with them)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=10)
        for a in self._actors:
            try:
                self._ray.kill(a, no_restart=True)
            except Exception:
                pass

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- internals (all called with self._cv held unless noted) --------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("verifier pool was shut down")
        if self._failure is not None:
            raise RuntimeError("verifier pool dispatcher failed") from self._failure

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._spec_dicts, self._timeout_s, self._sys_path)

    def _dispatch(self) -> None:
        free = sum(self._per_actor - n for n in self._load)
        while self._queue and free > 0:
            slot = min(range(len(self._actors)), key=self._load.__getitem__)
            # Spread what is queued over the free slots, at most batch_size per call.
            n = min(self._batch_size, max(1, -(-len(self._queue) // free)))
            items = [self._queue.popleft() for _ in range(min(n, len(self._queue)))]
            # No legitimate call takes longer: a child start plus timeout_s (and a restart) per item.
            deadline = time.monotonic() + self._watchdog_base_s + len(items) * (self._timeout_s + self._watchdog_item_s)
            ref = self._actors[slot].score.remote(items)
            self._inflight[ref] = _Call(slot, self._gens[slot], items, deadline)
            self._load[slot] += 1
            free -= 1

    def _record(self, key: Hashable, scores: dict[str, float]) -> None:
        if key not in self._open or key in self._results:
            return  # gathered already, or a duplicate: never count a completion twice
        self._results[key] = scores
        self._attempts.pop(key, None)
        self._stats["scored"] += 1

    def _replace(self, slot: int, gen: int, why: str) -> None:
        if self._gens[slot] != gen:
            return  # this actor was already replaced (several of its calls fail together)
        old = self._actors[slot]
        try:
            self._ray.kill(old, no_restart=True)
        except Exception:
            pass
        self._actors[slot] = self._new_actor()
        self._gens[slot] += 1
        self._stats["restarts"] += 1
        self._errors.append(f"actor {slot} replaced: {why}")
        _log.warning("verifier actor %d replaced: %s", slot, why)

    def _requeue(self, items: list[Item], why: str) -> None:
        back = []
        for key, completion, gt, route in items:
            if key not in self._open or key in self._results:
                continue
            tries = self._attempts.get(key, 0) + 1
            self._attempts[key] = tries
            if tries >= self._max_attempts:
                self._stats["errors"] += 1
                self._errors.append(f"{key}: gave up after {tries} lost attempts ({why})")
                self._record(key, self._composite.zeros(route))
            else:
                back.append((key, completion, gt, route))
                self._stats["resubmitted"] += 1
        self._queue.extendleft(reversed(back))

    def _finish(self, ref: Any, call: _Call) -> None:
        """Handle one completed call (lock held)."""
        self._load[call.slot] -= 1
        try:
            results, restarts = self._ray.get(ref)
        except Exception as e:
            dead = isinstance(e, self._ray.exceptions.RayActorError)
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            if dead:
                self._replace(call.slot, call.gen, why)
            else:
                self._errors.append(f"call failed: {why}")
            self._requeue(call.items, why)
            return
        self._stats["process_restarts"] += restarts
        for key, scores, status, errors, seconds in results:
            if status == "timeout":
                self._stats["timeouts"] += 1
                self._errors.append(f"{key}: timed out after {self._timeout_s:g} s")
            elif status == "budget":  # scored, but a reward gave up on its time budget (math-verify)
                self._stats["timeouts"] += 1
                self._errors.append(f"{key}: a reward gave up on its time budget")
            elif status == "crash":
                self._stats["errors"] += 1
                self._errors.extend(f"{key}: {m}" for m in errors)
            if status in ("ok", "budget") and errors:
                self._stats["errors"] += len(errors)
                self._errors.extend(f"{key}: {m}" for m in errors)
            if key in self._open and key not in self._results:
                self._score_time += seconds
                self._max_score_time = max(self._max_score_time, seconds)
            self._record(key, scores)

    def _run(self) -> None:
        """Dispatcher thread: wait for calls, record results, send more work."""
        try:
            while True:
                with self._cv:
                    if self._closed:
                        return
                    self._dispatch()
                    refs = list(self._inflight)
                    if not refs:
                        self._cv.wait(0.5)
                        continue
                # Outside the lock: submit() and gather() stay responsive while we wait on Ray.
                ready, _ = self._ray.wait(refs, num_returns=1, timeout=0.05)
                if ready:
                    ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
                now = time.monotonic()
                with self._cv:
                    for ref in ready:
                        call = self._inflight.pop(ref, None)
                        if call is not None:
                            self._finish(ref, call)
                    for ref, call in list(self._inflight.items()):
                        if now > call.deadline:  # wedged actor: replace it, re-score its work
                            del self._inflight[ref]
                            self._load[call.slot] -= 1
                            self._replace(call.slot, call.gen, "call overran its watchdog deadline")
                            self._requeue(call.items, "watchdog")
                    self._dispatch()
                    self._cv.notify_all()
        except BaseException as e:  # surface dispatcher bugs in gather() instead of hanging it
            with self._cv:
                self._failure = e
                self._cv.notify_all()
            _log.exception("verifier pool dispatcher failed")
