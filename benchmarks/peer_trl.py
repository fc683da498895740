"""TRL's side of `make bench-peer` (runs in .venv-trl, started by benchmarks/peer.py): TRL's
GRPOTrainer on the model, data and settings peer.py gives. Appends one JSON line per step to
spec["log"] as TRL logs the step (peer.py stamps those from outside: the headline whole step, timed
as vrft's), and prints one line `PEER {json}` with its inside figures: each step as TRL's callbacks
bound it (on_step_begin to on_step_end) and its generate+score share (TRL's
`_generate_and_score_completions`), the rest being the policy/reference forwards, backward and
AdamW. The rewards are vrft's own verifiers (the same functions vrft's pool calls).

    python -m benchmarks.peer_trl '{"model": ..., "data": ..., "steps": ..., ...}'
"""

from __future__ import annotations

import json
import sys
import tempfile
import time


def reward_funcs(names: list[str]):
    """TRL calls each with the batch's completions and every dataset column; conversational
    prompts give completions as message lists."""
    from vrft.verifiers import get_reward

    def wrap(name: str):
        fn = get_reward(name)

        def reward(completions, ground_truth, **_):
            texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
            return [float(fn(t, json.loads(gt))) for t, gt in zip(texts, ground_truth, strict=True)]
        reward.__name__ = name
        return reward
    return [wrap(n) for n in names]


def main(spec: dict) -> dict:
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from vrft.rollout.processor import load_processor

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    rows = load_from_disk(spec["data"]).select(range(spec["prompts"] * (spec["steps"] + 1)))
    # Visual-RFT's messages (rollout/inputs.py build_messages): the image first, then the text;
    # TRL puts the row's `image` into the {"type": "image"} part.
    data = rows.map(lambda r: {"prompt": [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": r["problem"]}]}]},
        remove_columns=[c for c in rows.column_names if c not in ("image", "ground_truth")])
    # vrft's image-only Qwen2-VL processor: AutoProcessor needs torchvision for the video half.
    processor = load_processor(spec["model"])
    model = AutoModelForImageTextToText.from_pretrained(spec["model"], dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, use_cpu=True, bf16=False, seed=spec["seed"], report_to="none",
            per_device_train_batch_size=spec["prompts"] * spec["n"], num_generations=spec["n"],
            steps_per_generation=1, gradient_accumulation_steps=1, max_steps=spec["steps"],
            max_completion_length=spec["max_new_tokens"], temperature=1.0, top_p=1.0, top_k=0,
            learning_rate=spec["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, beta=spec["beta"], loss_type="grpo", scale_rewards="group",
            # TRL defaults to True; vrft's learner to False: equal settings, and TRL then keeps the
            # KV cache on while generating.
            gradient_checkpointing=spec.get("gradient_checkpointing", False),
            save_strategy="no", logging_steps=1, dataloader_num_workers=0, shuffle_dataset=False,
            disable_tqdm=True)
        trainer = GRPOTrainer(model=model, args=args, train_dataset=data, processing_class=processor,
                              reward_funcs=reward_funcs(spec["rewards"]))
        generate = trainer._generate_and_score_completions
        gen_seconds: list[float] = []

        def timed_generate(*a, **kw):
            start = time.perf_counter()
            out_ = generate(*a, **kw)
            gen_seconds.append(time.perf_counter() - start)
            return out_
        trainer._generate_and_score_completions = timed_generate
        steps: list[float] = []
        rewards: list[float] = []
        lengths: list[float] = []

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *_, **__):
                self.start = time.perf_counter()

            def on_step_end(self, *_, **__):
                steps.append(time.perf_counter() - self.start)

            def on_log(self, _args, state, _control, logs=None, **__):
                if logs and "reward" in logs:
                    rewards.append(float(logs["reward"]))
                    lengths.append(float(logs.get("completions/mean_length", float("nan"))))
                    # The per-step record benchmarks.peer stamps from outside, as it stamps vrft's
                    # metrics.jsonl: one line each step, flushed at once.
                    step_log.write(json.dumps({"step": state.global_step, "reward": rewards[-1]}) + "\n")
                    step_log.flush()
        trainer.add_callback(StepTimer())
        with open(spec["log"], "a") as step_log:
            trainer.train()
    return {"step_s": steps, "generate_s": gen_seconds, "reward": rewards, "length": lengths}


if __name__ == "__main__":
    print("PEER " + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
