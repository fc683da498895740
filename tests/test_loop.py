"""The RL loop end to end on a real local Ray cluster: 2 rollout workers, 2 verifier actors and a
DeepSpeed learner group of world size 2 (no mocks of Ray, DeepSpeed or transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import ray

from vrft.orchestrator.config.schema import load_config
from vrft.orchestrator.train.loop import train

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"
STEP_KEYS = {"step", "policy_version", "reward/mean", "reward/classification", "reward/format",
             "reward/accuracy", "learner/kl", "learner/loss", "rollout/tokens", "time/rollout",
             "time/verify", "time/learn", "time/sync", "data/skipped_images", "verifier/timeouts"}


def read_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_three_grpo_steps_then_resume(ray_cluster, tiny_model, color_data, tmp_path, caplog):
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.save_every=1"])
    with caplog.at_level("WARNING", logger="vrft"):
        summary = train(cfg, tmp_path)
    # the skipped rows are named in the run log, not only counted in a metric
    assert "rows skipped for undecodable images (first ids:" in caplog.text

    records = read_records(tmp_path)
    steps = [r for r in records if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for record in steps:
        assert STEP_KEYS <= record.keys(), STEP_KEYS - record.keys()
        assert record["learner/loss"] == record["learner/loss"]  # not NaN
        assert record["rollout/tokens"] > 0
    assert [r["policy_version"] for r in steps] == [1.0, 2.0, 3.0]
    # Six rows with two undecodable: over three steps of two prompts both bad rows are met.
    assert steps[-1]["data/skipped_images"] >= 2
    assert records[-1]["summary"] is True
    assert summary["accuracy_first20"] == steps[0]["reward/accuracy"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000003"

    # Resume the finished run for two more steps: it continues from step 3 and policy version 3.
    more = load_config(tmp_path / "config.yaml", ["run.steps=5"])
    train(more, tmp_path, resume=True)
    steps = [r for r in read_records(tmp_path) if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    assert steps[-1]["policy_version"] == 5.0


def test_async_rollouts_stay_within_max_staleness(ray_cluster, tiny_model, color_data, tmp_path):
    """Rollouts for step t+1 run while the learner trains step t: a batch made under version v is
    trained on while the learner is at v+1, never further behind than run.max_staleness."""
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=4",
                               "run.mode=async", "run.max_staleness=1", "learner.is_correction=true"])
    train(cfg, tmp_path)
    steps = [r for r in read_records(tmp_path) if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    staleness = [r["async/staleness"] for r in steps]
    assert staleness[0] == 0.0  # nothing to overlap with before the first update
    assert all(s == 1.0 for s in staleness[1:]), staleness
    for r in steps:
        # learner version before the step's update, minus the version the rollouts came from
        assert r["policy_version"] - 1 - r["rollout/policy_version_min"] == r["async/staleness"]
        assert "learner/is/mismatch_kl" in r
        # engine/learner parity only where the learner holds the weights that sampled (step 1)
        assert ("parity/logprob_kl" in r) == (r["async/staleness"] == 0.0)
    assert [r["policy_version"] for r in steps] == [1.0, 2.0, 3.0, 4.0]


def test_colocated_placement_sleeps_engines_around_learning(ray_cluster, tiny_model, color_data, tmp_path):
    """Engine i shares learner rank i's placement-group bundle; engines sleep while the learner
    trains and wake for the weight sync (a no-op for memory on CPU, the same calls as on GPU)."""
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=2",
                               "rollout.placement=colocated"])
    train(cfg, tmp_path)
    steps = [r for r in read_records(tmp_path) if "step" in r]
    assert [r["policy_version"] for r in steps] == [1.0, 2.0]
    assert ray.util.placement_group_table() == {} or all(
        pg["state"] == "REMOVED" for pg in ray.util.placement_group_table().values())


def test_dapo_dynamic_sampling_refills_the_batch(ray_cluster, tiny_model, color_data, tmp_path):
    """Groups whose rewards are all equal are dropped and refilled from more prompts (up to 2
    rounds); never more groups than the batch's prompts are trained on; an update happens only
    when some group is left. The reward varies within a group only for "green" prompts."""
    plugin = (f"{__package__}." if __package__ else "") + "test_verifiers_plugins:parity_if_green"
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=3",
                               f"rewards=[{{name: '{plugin}'}}]", "dapo.dynamic_sampling=true",
                               "dapo.max_refills=2", "learner.loss_agg=token-mean",
                               "learner.policy_loss=ppo_clip", "rollout.num_workers=1", "verifier.num_actors=1"])
    train(cfg, tmp_path)
    steps = [r for r in read_records(tmp_path) if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert sum(r["dapo/groups_dropped"] for r in steps) > 0  # blue prompts were met and dropped
    assert any(r.get("dapo/refill_rounds", 0) > 0 for r in steps)
    versions, version = [], 0.0
    for r in steps:
        assert 0 <= r["dapo/groups_kept"] <= 2
        assert r.get("dapo/refill_rounds", 0) <= 2
        skipped = r["dapo/groups_kept"] == 0
        assert ("dapo/skipped_steps" in r) == skipped
        assert ("learner/loss" in r) == (not skipped)
        version += 0.0 if skipped else 1.0
        versions.append(version)
    assert [r["policy_version"] for r in steps] == versions
    assert versions[-1] >= 1  # green groups were trained on


def test_mixed_tasks_train_in_one_run_each_scored_by_its_own_rewards(ray_cluster, tiny_model, tmp_path, caplog):
    """Detection, classification and counting rows in one dataset: each row's task picks its rewards
    (detection and counting get user rewards that read only their own task's typed ground truth;
    classification keeps the paper's defaults), and rewards are logged per task."""
    from vrft.testing.released import make_mixed

    data = make_mixed(tmp_path / "data", n=4, seed=0)
    plugins = (f"{__package__}." if __package__ else "") + "test_verifiers_plugins"
    rewards = (f"rewards={{detection: [{{name: '{plugins}:boxes_plus_ten'}}], "
               f"counting: [{{name: '{plugins}:answer_number'}}]}}")
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={data}", "run.steps=2", rewards,
                               "data.prompts_per_step=6", "data.task=null", "rollout.num_workers=1",
                               "verifier.num_actors=1", "rollout.prompts_per_call=6"])
    train(cfg, tmp_path / "run")
    steps = [r for r in read_records(tmp_path / "run") if "step" in r]
    assert len(steps) == 2
    seen = set()
    for r in steps:
        det = {k for k in r if k.startswith("reward/detection/")}
        cnt = {k for k in r if k.startswith("reward/counting/")}
        cls = {k for k in r if k.startswith("reward/classification/")}
        seen |= {k.split("/")[1] for k in det | cnt | cls}
        if det:  # 10 + boxes per detection row: 1-3 boxes, or 0 for a negative row
            assert det == {f"reward/detection/{plugins}:boxes_plus_ten", "reward/detection/mean",
                           "reward/detection/accuracy"}
            assert 10.0 <= r[f"reward/detection/{plugins}:boxes_plus_ten"] <= 13.0
        if cnt:  # the counting answers themselves (0-4 objects left)
            assert cnt == {f"reward/counting/{plugins}:answer_number", "reward/counting/mean",
                           "reward/counting/accuracy"}
            assert 0.0 <= r[f"reward/counting/{plugins}:answer_number"] <= 4.0
        if cls:  # the paper's classification composition, in [0, 1] each
            assert {"reward/classification/classification", "reward/classification/format"} <= cls
            assert 0.0 <= r["reward/classification/mean"] <= 2.0
    assert seen == {"detection", "counting", "classification"}  # 12 prompts over 2 steps meet all three


def test_eval_during_training_logs_at_its_steps_and_keeps_the_best(ray_cluster, tiny_model, color_data, tmp_path,
                                                                   monkeypatch):
    """eval.every 2 with at_start on the run's own engines: eval metrics at steps 0, 2 and 4 only;
    run.keep_best keeps the checkpoint of the best eval (checkpoints/best) even past run.keep_last.
    A random tiny model scores 0 at every eval, so the accuracies are set per step after the real
    evaluation ran (step 2 best, then a worse step 4): the best is the middle one, not the last."""
    import vrft.orchestrator.train.loop as loop
    from vrft.testing.released import make_reason_rft_counting

    real_evaluate, injected = loop.evaluate, {0: 10.0, 2: 60.0, 4: 30.0}

    def evaluate(cfg, workers, processor, eval_sets, step):
        out = real_evaluate(cfg, workers, processor, eval_sets, step)
        assert 0.0 <= out["eval/clevr_math/accuracy"] <= 100.0 and out["eval/clevr_math/seconds"] > 0
        return {**out, "eval/clevr_math/accuracy": injected[step]}

    monkeypatch.setattr(loop, "evaluate", evaluate)

    bench = make_reason_rft_counting(tmp_path / "bench", n=3)
    evals = f"eval.benchmarks=[{{benchmark: clevr_math, data: '{bench}'}}]"
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=4",
                               evals, "eval.every=2", "eval.at_start=true", "eval.max_new_tokens=8",
                               "run.keep_best=eval/clevr_math/accuracy", "run.keep_last=1", "run.save_every=1",
                               "rollout.num_workers=1", "verifier.num_actors=1"])
    run = tmp_path / "run"
    train(cfg, run)
    records = [r for r in read_records(run) if "step" in r]
    with_eval = {r["step"]: r["eval/clevr_math/accuracy"] for r in records if "eval/clevr_math/accuracy" in r}
    assert with_eval == injected
    ckpts = run / "checkpoints"
    assert (ckpts / "best").read_text() == "step_000002"
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_000002", "step_000004"]  # keep_last=1 + best
    state = json.loads((ckpts / "step_000004" / "state.json").read_text())
    assert state["best"] == {"metric": "eval/clevr_math/accuracy", "value": 60.0, "step": 2}


def test_resume_without_a_checkpoint_says_so_and_starts_clean(ray_cluster, tiny_model, color_data, tmp_path, caplog):
    """`--resume` of a run dir with no complete checkpoint (killed before its first one): one warning,
    a fresh start at step 1, and none of the earlier attempt's step records repeated."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "reward/mean": 0.5}\n{"step": 2, "reward/mean": 0.5}\n')
    cfg = load_config(CONFIG, [f"model.path={tiny_model}", f"data.path={color_data}", "run.steps=1",
                               "rollout.num_workers=1", "verifier.num_actors=1"])
    with caplog.at_level("WARNING", logger="vrft"):
        train(cfg, run, resume=True)
    assert "no complete checkpoint there; starting from step 0" in caplog.text
    assert [r["step"] for r in read_records(run) if "step" in r] == [1]
