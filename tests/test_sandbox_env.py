"""Reward code runs in a child process that inherits no secrets: tokens and credentials in the
environment of the driver or of a Ray worker (HF_TOKEN, WANDB_API_KEY, cloud keys, Ray's auth
token) never reach a reward, a user's plugin included."""

from __future__ import annotations

from vrft.verifiers.sandbox import Sandbox

SECRETS = {"HF_TOKEN": "hf_x", "WANDB_API_KEY": "w", "AWS_SECRET_ACCESS_KEY": "a", "RAY_AUTH_TOKEN": "r"}


def test_reward_code_sees_no_tokens(monkeypatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    box = Sandbox()
    try:
        status, env = box.call("os:environ.copy", (), 60.0)
    finally:
        box.kill()
    assert status == "ok"
    assert not set(SECRETS) & set(env), sorted(env)
    assert "PATH" in env and "PYTHONPATH" in env  # what the child needs to run and import
