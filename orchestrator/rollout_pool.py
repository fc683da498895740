"""`RolloutWorkers`: the run's rollout actors, kept whole when one is lost.

A worker that dies (SIGKILL, OOM, a crashed engine, its node lost) is found by the call that
needed it (`take`, a rollout's result) or by the probe before a weight sync (`_settle`). It is
replaced at once, in the same placement bundle (`rollout/worker_restarts`), and its unreturned
rollout calls go to live workers with the same prompts and seed (`rollout/redispatched`): a call's
completions are scored only when the call returns, so none is lost and none counted twice. Past
`rollout.max_worker_restarts` replacements the run stops (`RunStopped`).

A replacement starts with the checkpoint's weights, so it takes no rollout until it has the
current ones. The weight-sync group (learner rank 0 + every engine, over one TCPStore) cannot
admit one new member, so the next `sync` re-forms it whole, on a fresh store, once the in-flight
rollouts have returned (a join queued behind them would hold the rendezvous), then broadcasts.
If no live worker is left to take a call, that happens at once, with the workers' current version
(`take` runs only between syncs, while the learner holds exactly those weights).

Ops inside the group are bounded by `sync.timeout_s`; a sync that fails because a worker died
is retried with its replacement; one that fails with every worker alive stops the run.
"""

from __future__ import annotations

import logging
import time

import ray
from ray.exceptions import RayActorError, RayError

from learner.group import RankFailed
from orchestrator.config import TrainConfig
from orchestrator.faults import RunStopped, describe, reason, wait_started
from rollout.engine import SamplingParams
from rollout.inputs import PromptInputs
from rollout.worker import RolloutWorker

log = logging.getLogger("vrft")


def engine_options(cfg: TrainConfig) -> dict:
    rc = cfg.rollout
    options = {"dtype": rc.dtype, "trust_remote_code": cfg.model.trust_remote_code}
    if rc.engine == "hf":
        options.update(max_batch_size=rc.max_batch_size, share_prefill=rc.share_prefill)
    else:
        options.update(tensor_parallel_size=rc.tensor_parallel_size, min_pixels=cfg.model.min_pixels,
                       max_pixels=cfg.model.max_pixels, **rc.vllm)
    return options


class RolloutWorkers:
    """Indexable and iterable like the list of current actor handles (evaluation, sleep/wake and
    shutdown use it so); rollouts go through `generate` and `take`, weights through `sync`."""

    def __init__(self, cfg: TrainConfig, model_path: str, placement: list[dict]):
        rc = cfg.rollout
        options = engine_options(cfg)
        self._spawn = lambda i: RolloutWorker.options(**placement[i]).remote(
            rc.engine, model_path, options, rc.torch_threads)
        self.handles = [self._spawn(i) for i in range(rc.num_workers)]
        self.max_restarts, self.restarts, self.redispatched = rc.max_worker_restarts, 0, 0
        self.start_timeout_s, self.sync_timeout_s = cfg.run.start_timeout_s, cfg.sync.timeout_s
        self.info: list[dict] = [{} for _ in self.handles]  # ready(): pid, host, sync_ranks
        self._gen = [0] * len(self.handles)  # bumped when worker i is replaced
        self._calls: dict = {}  # ObjectRef -> (worker, its generation, prompts, sampling)
        self._starting: dict[int, ray.ObjectRef] = {}  # replacements still loading: their ready()
        self._stale: set[int] = set()  # started, not yet holding the current weights
        self.learner, self.backend, self.bucket_mb, self.version = None, "gloo", 256.0, 0
        self.needs_group = True
        try:
            self.info = wait_started([h.ready.remote() for h in self.handles],
                                     [f"rollout worker {i}" for i in range(len(self.handles))], self.start_timeout_s)
        except RunStopped:
            self.kill()
            raise

    # ---- the list of handles --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.handles)

    def __iter__(self):
        return iter(list(self.handles))

    def __getitem__(self, i: int):
        return self.handles[i]

    @property
    def pids(self) -> list[int | None]:
        return [info.get("pid") for info in self.info]

    def name(self, i: int) -> str:
        pid = self.info[i].get("pid")
        return f"rollout worker {i}" + (f" (pid {pid})" if pid else "")

    def kill(self) -> None:
        for handle in self.handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # already gone with the cluster
                pass

    # ---- rollouts -------------------------------------------------------------------------
    def live(self) -> list[int]:
        return [i for i in range(len(self.handles)) if i not in self._starting and i not in self._stale]

    def generate(self, prompts: list[PromptInputs], sampling: SamplingParams, call: int | None = None):
        """Start a rollout call on a live worker (round robin by `call`, else the least busy); its ref."""
        live = self.live()
        if not live:
            self._bring_up()
            live = self.live()
        if call is not None:
            i = live[call % len(live)]
        else:
            busy = [w for w, *_ in self._calls.values()]
            i = min(live, key=busy.count)
        ref = self.handles[i].generate.remote(prompts, sampling)
        self._calls[ref] = (i, self._gen[i], prompts, sampling)
        return ref

    def take(self, ref):
        """A returned call's `(groups, engine seconds)`; or, if its worker died, the ref of the same
        call re-dispatched (the caller waits for that instead)."""
        i, gen, prompts, sampling = self._calls.pop(ref)
        try:
            return ray.get(ref)
        except RayActorError as err:
            if gen == self._gen[i]:  # the first to see this death (a sync probe may have seen it)
                self._replace(i, err)
            self.redispatched += 1
            return self.generate(prompts, sampling)
        except RayError as err:  # the engine raised: a bug or bad input, not a lost process
            raise RunStopped(f"{self.name(i)}: {reason(err)}") from None

    def _replace(self, i: int, err: BaseException) -> None:
        self.restarts += 1
        who = self.name(i)
        if self.restarts > self.max_restarts:
            raise RunStopped(f"{who}: {reason(err)}; rollout.max_worker_restarts={self.max_restarts} reached")
        log.warning("%s: %s; starting a replacement (restart %d of at most %d)", who, reason(err),
                    self.restarts, self.max_restarts)
        try:
            ray.kill(self.handles[i], no_restart=True)  # a hung one too; a dead one is gone already
        except Exception:
            pass
        self.handles[i] = self._spawn(i)
        self._gen[i] += 1
        self.info[i] = {}
        self._starting[i] = self.handles[i].ready.remote()
        self._stale.discard(i)
        self.needs_group = True

    def _bring_up(self) -> None:
        """No worker can take a call: admit the replacements now, with the workers' version."""
        self.sync(self.version, self.bucket_mb)

    # ---- weight sync ----------------------------------------------------------------------
    def connect(self, learner, backend: str, bucket_mb: float) -> None:
        """Form the weight-sync group with learner rank 0 (group rank 0; worker i follows)."""
        self.learner, self.backend, self.bucket_mb = learner, backend, bucket_mb
        lost = self._form_group()
        while lost:  # a worker lost while joining: replace it and form again
            for i, err in lost.items():
                self._replace(i, err)
            self._settle()
            lost = self._form_group()

    def sync(self, version: int, bucket_mb: float) -> dict[str, float]:
        """Broadcast the learner's weights as `version` to every worker, replacements included."""
        start = time.perf_counter()
        self.bucket_mb = bucket_mb
        plan = self.learner.plan(bucket_mb)
        while True:
            self._settle()
            lost = self._form_group() if self.needs_group else {}
            if not lost:
                lost, sent = self._broadcast(plan, version, bucket_mb)
                if not lost:
                    break
            for i, err in lost.items():
                self._replace(i, err)
        self.version = version
        self._stale.clear()
        return {"time/sync": time.perf_counter() - start, "sync/bytes": float(sent),
                "sync/buckets": float(len(plan))}

    def _settle(self) -> None:
        """Every worker idle, answering and started: in-flight rollouts returned, the dead replaced."""
        if self._calls:  # results stay in the object store for `take`
            ray.wait(list(self._calls), num_returns=len(self._calls))
        probes = {i: h.version.remote() for i, h in enumerate(self.handles) if i not in self._starting}
        for i, err in self._failures(probes, self.sync_timeout_s).items():
            self._replace(i, err)  # dead, or hung past sync.timeout_s on a trivial call
        if self._starting:
            index = sorted(self._starting)
            infos = wait_started([self._starting[i] for i in index], [self.name(i) for i in index],
                                 self.start_timeout_s)
            for i, info in zip(index, infos, strict=True):
                self.info[i] = info
                self._stale.add(i)
            self._starting.clear()

    def _failures(self, refs: dict[int, ray.ObjectRef], timeout_s: float | None) -> dict[int, BaseException]:
        """Worker index -> the error of its call (a call unanswered within `timeout_s`: TimeoutError)."""
        done, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        failed: dict[int, BaseException] = {}
        for i, ref in refs.items():
            if ref not in done:
                failed[i] = TimeoutError(f"no answer within {timeout_s:g} s (sync.timeout_s)")
                continue
            try:
                ray.get(ref)
            except RayError as err:
                failed[i] = err
        return failed

    def _collective(self, learner_call, refs: dict[int, ray.ObjectRef]) -> tuple[dict, object]:
        """Run learner rank 0's side and the workers' of one group operation. Returns the workers
        that died (to replace, then retry) and the learner's result; any other failure stops the run."""
        learner_error = result = None
        try:
            result = learner_call()
        except RankFailed as err:
            if err.died:
                raise
            learner_error = err  # a peer gone mid-op: the workers' errors say which
        failed = self._failures(refs, None)  # each bounded by sync.timeout_s inside the actor
        dead = {i: err for i, err in failed.items() if isinstance(err, RayActorError)}
        if dead:
            self.needs_group = True
            return dead, result
        if learner_error is not None:
            raise RunStopped(f"weight sync: {describe(learner_error)}")
        if failed:
            i, err = next(iter(failed.items()))
            raise RunStopped(f"weight sync: {self.name(i)}: {reason(err)}")
        return {}, result

    def _form_group(self) -> dict[int, BaseException]:
        ranks = [int(info.get("sync_ranks", 1)) for info in self.info]
        world = 1 + sum(ranks)
        addr, port = self.learner.sync_endpoint()  # a fresh store each time the group forms
        joined = self.learner.join_weight_sync(addr, port, world, self.backend, self.sync_timeout_s)
        refs, first = {}, 1
        for i, handle in enumerate(self.handles):
            refs[i] = handle.join_weight_sync.remote(addr, port, first, world, self.backend, self.sync_timeout_s)
            first += ranks[i]
        lost, _ = self._collective(lambda: self.learner.wait_joined(joined), refs)
        self.needs_group = bool(lost)
        return lost

    def _broadcast(self, plan: list[dict], version: int, bucket_mb: float) -> tuple[dict, int]:
        receiving = {i: h.receive_weights.remote(plan, version) for i, h in enumerate(self.handles)}
        lost, sent = self._collective(lambda: self.learner.broadcast_weights(version, bucket_mb), receiving)
        if not lost:
            versions = ray.get(list(receiving.values()))
            if any(v != version for v in versions):
                raise RunStopped(f"weight sync: workers report versions {versions}, expected {version}")
        return lost, int(sent or 0)
