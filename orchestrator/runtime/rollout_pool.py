"""`RolloutWorkers`: the run's rollout actors, kept whole when one is lost.

A worker that dies (SIGKILL, OOM, a crashed engine, its node lost) is found by the call that
needed it (`take`, a rollout's result) or by the probe before a weight sync (`_settle`). It is
replaced at once, in the same placement bundle (`rollout/worker_restarts`), and its unreturned
rollout calls go to live workers with the same prompts and seed (`rollout/redispatched`): a call's
completions are scored only when the call returns, so none is lost and none counted twice. Past
`rollout.max_worker_restarts` replacements the run stops (`RunStopped`).

A replacement starts with the checkpoint's weights, so it takes no rollout until it has the
current ones. The weight transfer (learner rank 0 + every engine; learner/transfer.py) cannot
admit one new member, so the next `sync` re-forms it whole, on a fresh rendezvous, once the
in-flight rollouts have returned (a join queued behind them would hold the rendezvous), then sends.
If no live worker is left to take a call, that happens at once, with the workers' current version
(`take` runs only between syncs, while the learner holds exactly those weights).

Learner rank 0 drives the engines through a `WorkerClient` (rollout/client.py); a call that fails
on some workers comes back as `UpdateFailed` naming each. A worker whose update failed holds
half-updated weights and is never sampled from again: if any worker died, every failed one is
replaced (the dead count as restarts, the others in `rollout/replaced_after_failed_update`) and the
sync retried; a sync that fails with every worker alive stops the run, named. Ops inside the group
are bounded by `sync.timeout_s`, and the whole send by a multiple of it: NCCL cannot notice a lost
peer, so a transfer it holds stops the run, named, instead of hanging.
"""

from __future__ import annotations

import logging
import time

import ray
from ray.exceptions import RayActorError, RayError

from vrft.learner.group import RankFailed
from vrft.orchestrator.config.schema import EngineSpec, SyncConfig, TrainConfig
from vrft.orchestrator.runtime.faults import RunStopped, describe, reason, wait_started
from vrft.rollout.client import UpdateFailed, WorkerClient
from vrft.rollout.engine import SamplingParams
from vrft.rollout.inputs import PromptInputs
from vrft.rollout.worker import RolloutWorker

log = logging.getLogger("vrft")


def sync_backend(cfg: TrainConfig | EngineSpec) -> str:
    """How weights travel: `sync.backend`, or by placement: gloo where the actors have no GPUs,
    NCCL between separate GPUs, CUDA IPC where engine i shares learner rank i's GPU (NCCL refuses
    two ranks on one device). Engines started alone (EngineSpec) have no learner: gloo, never used."""
    if isinstance(cfg, EngineSpec):
        return "gloo"
    if cfg.sync.backend != "auto":
        return cfg.sync.backend
    # The driver may sit on a CPU-only head node: decide from where the actors are placed.
    if not (cfg.rollout.num_gpus_per_worker > 0 and cfg.learner.num_gpus_per_rank > 0):
        return "gloo"
    return "ipc" if cfg.rollout.placement == "colocated" else "nccl"


def engine_options(cfg: TrainConfig | EngineSpec) -> dict:
    rc = cfg.rollout
    options = {"dtype": rc.dtype, "trust_remote_code": cfg.model.trust_remote_code}
    if rc.engine == "hf":
        options.update(max_batch_size=rc.max_batch_size, share_prefill=rc.share_prefill)
    else:
        # Sleep mode forces vLLM's CuMem allocator: only where the engine sleeps (colocated).
        options.update(tensor_parallel_size=rc.tensor_parallel_size, min_pixels=cfg.model.min_pixels,
                       max_pixels=cfg.model.max_pixels, weight_transfer=sync_backend(cfg),
                       enable_sleep_mode=rc.placement == "colocated")
        options.update(rc.vllm)
    if rc.tools is not None:
        options["tools"] = rc.tools.model_dump(exclude={"mask_cut_by_turns"})
    return options


class RolloutWorkers:
    """Indexable and iterable like the list of current actor handles (evaluation, sleep/wake and
    shutdown use it so); rollouts go through `generate` and `take`, weights through `sync`."""

    def __init__(self, cfg: TrainConfig | EngineSpec, model_path: str, placement: list[dict]):
        rc = cfg.rollout
        options = engine_options(cfg)
        self._spawn = lambda i: RolloutWorker.options(**placement[i]).remote(
            rc.engine, model_path, options, rc.torch_threads)
        self.handles = [self._spawn(i) for i in range(rc.num_workers)]
        self.max_restarts, self.restarts, self.redispatched = rc.max_worker_restarts, 0, 0
        sync = cfg.sync if isinstance(cfg, TrainConfig) else SyncConfig()  # EngineSpec: weights never move
        self.start_timeout_s, self.sync_timeout_s = cfg.run.start_timeout_s, sync.timeout_s
        self.info: list[dict] = [{} for _ in self.handles]  # ready(): pid, host, sync_ranks
        self._gen = [0] * len(self.handles)  # bumped when worker i is replaced
        self._calls: dict = {}  # ObjectRef -> (worker, its generation, prompts, sampling)
        self._starting: dict[int, ray.ObjectRef] = {}  # replacements still loading: their ready()
        self._stale: set[int] = set()  # started, not yet holding the current weights
        self.learner, self.backend, self.bucket_mb, self.version = None, "gloo", 256.0, 0
        self.engine_kind, self.rename = rc.engine, None
        self.needs_group = True
        self.replaced_after_failed_update = 0  # alive, but their update failed (never sampled again)
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

    def _replace(self, i: int, err: BaseException | str, died: bool = True) -> None:
        """Kill worker i and start another in its bundle. `died=False`: it lives, but its weights
        were half-updated by a failed sync (a peer's death), which is not a restart of its own."""
        who, why = self.name(i), err if isinstance(err, str) else reason(err)
        if died:
            self.restarts += 1
            if self.restarts > self.max_restarts:
                raise RunStopped(f"{who}: {why}; rollout.max_worker_restarts={self.max_restarts} reached")
            log.warning("%s: %s; starting a replacement (restart %d of at most %d)", who, why,
                        self.restarts, self.max_restarts)
        else:
            self.replaced_after_failed_update += 1
            log.warning("%s: its weight update failed (%s): replaced, never sampled from again", who, why)
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
    def connect(self, learner, backend: str, bucket_mb: float, rename: list | None = None) -> None:
        """Form the weight transfer with the learner (rank 0; worker i's engine follows). `rename`:
        the model family's name prefixes for vLLM's loaders (rollout/vllm_inputs.py)."""
        self.learner, self.backend, self.bucket_mb, self.rename = learner, backend, bucket_mb, rename
        lost = self._form_group()
        while lost:  # a worker lost while joining: replace it and form again
            self._replace_failed(lost)
            self._settle()
            lost = self._form_group()

    def sync(self, version: int, bucket_mb: float) -> dict[str, float]:
        """Send the learner's weights as `version` to every worker, replacements included."""
        start = time.perf_counter()
        if bucket_mb != self.bucket_mb:
            self.bucket_mb, self.needs_group = bucket_mb, True
        while True:
            self._settle()
            lost = self._form_group() if self.needs_group else {}
            if not lost:
                lost, stats = self._learner_call(
                    lambda: self.learner.send_weights(version, self._send_timeout()))
                if not lost:
                    break
            self.needs_group = True
            self._replace_failed(lost)
        self.version = version
        self._stale.clear()
        return {"time/sync": time.perf_counter() - start, "sync/bytes": float(stats.get("bytes", 0.0)),
                "sync/buckets": float(stats.get("buckets", 0.0)),
                "rollout/replaced_after_failed_update": float(self.replaced_after_failed_update)}

    def _send_timeout(self) -> float:
        """A bound on the whole send: each bucket's transfer is bounded by sync.timeout_s."""
        return self.sync_timeout_s * (2 + len(self.learner.plan(self.bucket_mb)))

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

    def _learner_call(self, call) -> tuple[dict[int, tuple[bool, str]], dict]:
        """Run a learner-group call that drives the engines. Returns the workers to replace (index ->
        (died, reason)) if any died, else the call's result; any other failure stops the run."""
        try:
            return {}, call() or {}
        except RankFailed as err:
            if err.died:
                raise
            cause = getattr(err.error, "cause", None)
            if isinstance(cause, UpdateFailed) and cause.died:
                return dict(cause.failures), {}
            probes = {i: h.version.remote() for i, h in enumerate(self.handles)}
            dead = {i: (True, reason(e)) for i, e in self._failures(probes, self.sync_timeout_s).items()
                    if isinstance(e, RayActorError)}
            if dead:  # the learner saw the group break before the client heard of the death
                return dead, {}
            raise RunStopped(f"weight sync: {cause if isinstance(cause, UpdateFailed) else describe(err)}") from None

    def _replace_failed(self, failed: dict[int, tuple[bool, str]]) -> None:
        self.needs_group = True
        for i, (died, why) in sorted(failed.items()):
            self._replace(i, why, died=died)

    def _form_group(self) -> dict[int, tuple[bool, str]]:
        ranks = [int(info.get("sync_ranks", 1)) for info in self.info]
        offsets = [1 + sum(ranks[:i]) for i in range(len(ranks))]
        options = {"engine": self.engine_kind, "bucket_mb": self.bucket_mb, "timeout_s": self.sync_timeout_s,
                   "rename": self.rename, "world_size": 1 + sum(ranks)}
        if self.backend != "ipc":  # a group transport: a fresh rendezvous each time it forms
            options["endpoint"] = self.learner.sync_endpoint()
        client = WorkerClient(self.handles, offsets)
        lost, _ = self._learner_call(lambda: self.learner.init_weight_transfer(
            self.backend, client, options, timeout_s=2 * self.sync_timeout_s))
        self.needs_group = bool(lost)
        return lost
