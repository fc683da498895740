"""`WorkerClient`: the rollout workers as one weight-sync client (vLLM's `VLLMWeightSyncClient`).

The orchestrator builds one whenever the weight-sync group forms and hands it to the learner group;
learner rank 0's transfer (learner/transfer.py) calls its four methods, and each call runs on every
rollout worker at once. Worker i takes ranks `rank_offsets[i]` .. of a group transport (gloo/NCCL):
learner rank 0 is rank 0, each engine one rank per tensor-parallel worker.

A call that fails on some workers raises `UpdateFailed` naming each (and whether it died), after
every worker has answered: the orchestrator replaces them all, since an engine whose update failed
holds half-updated weights (rollout/engine.py).
"""

from __future__ import annotations

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError


class UpdateFailed(RuntimeError):
    """`failures`: worker index -> (died, one-line reason)."""

    def __init__(self, call: str, failures: dict[int, tuple[bool, str]]):
        self.call, self.failures = call, failures
        named = "; ".join(f"rollout worker {i}: {why}" for i, (_, why) in sorted(failures.items()))
        super().__init__(f"{named} (in {call})")

    def __reduce__(self):  # crosses Ray from the learner rank to the orchestrator intact
        return UpdateFailed, (self.call, self.failures)

    @property
    def died(self) -> set[int]:
        return {i for i, (dead, _) in self.failures.items() if dead}


def _reason(err: BaseException) -> str:
    if isinstance(err, RayActorError):
        return "died"
    cause = err.cause if isinstance(err, RayTaskError) and err.cause is not None else err
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"


class WorkerClient:
    def __init__(self, handles: list, rank_offsets: list[int]):
        self.handles, self.rank_offsets = list(handles), list(rank_offsets)
        self.next_version: int | None = None  # vLLM's trainer engines finish without a version

    def _all(self, call: str, args_of) -> list:
        refs = [getattr(h, call).remote(*args_of(i)) for i, h in enumerate(self.handles)]
        results, failures = [], {}
        for i, ref in enumerate(refs):
            try:
                results.append(ray.get(ref))
            except RayError as err:
                failures[i] = (isinstance(err, RayActorError), _reason(err))
                results.append(None)
        if failures:
            raise UpdateFailed(call, failures)
        return results

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        def args(i: int) -> tuple:
            if "rank_offset" in init_info or "master_address" in init_info:  # a group transport
                return ({**init_info, "rank_offset": self.rank_offsets[i]},)
            return (init_info,)

        self._all("init_weight_transfer_engine", args)

    def start_weight_update(self) -> None:
        self._all("start_weight_update", lambda i: ())

    def update_weights(self, update_info: dict) -> None:
        self._all("update_weights", lambda i: (update_info,))

    def finish_weight_update(self, weight_version: int | None = None) -> None:
        version = self.next_version if weight_version is None else weight_version
        if version is None:
            raise ValueError("weight sync: finish_weight_update without a version")
        versions = self._all("finish_weight_update", lambda i: (int(version),))
        wrong = {i: v for i, v in enumerate(versions) if v != version}
        if wrong:
            raise UpdateFailed("finish_weight_update", {i: (False, f"reports version {v}, expected {version}")
                                                        for i, v in wrong.items()})
