"""vrft.learner: the GRPO family as pure tensor functions, and the DeepSpeed learner on Ray."""

from vrft.learner.batch import Sample, TrainBatch
from vrft.learner.config import LearnerConfig

__all__ = ["LearnerConfig", "LearnerGroup", "Sample", "TrainBatch"]


def __getattr__(name: str):
    # LearnerGroup pulls in Ray and DeepSpeed: import it only when asked for.
    if name == "LearnerGroup":
        from vrft.learner.group import LearnerGroup
        return LearnerGroup
    raise AttributeError(name)
