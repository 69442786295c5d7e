#!/usr/bin/env python
"""Training speed, as one JSON object on stdout (issue 18: PPO >= 1,000 env steps/s for cnn
including updates on 2 CPU cores; >= 50,000 on a GPU).

- `ppo_steps_per_s`: per policy (the shipped network architectures, from their shipped
  weights), env steps per second of `--updates` whole PPO iterations (rollout + update)
  of `reflexdrive.train.ppo`'s model on its batched envs (`--envs` envs of lead-brake in
  realtime at `--latency`, `--n-steps` ticks each, `--epochs` epochs of `--batch-size`
  minibatches, the encoder frozen or not: `--[no-]freeze-encoder`), after one warm-up
  iteration. These default to `PPOConfig`'s, i.e. what `reflexdrive train --method ppo`
  runs; the benchmark only turns off the value warm-up and the `target_kl` early stop
  (every update trains the policy, every epoch runs: the steady state, at its dearest).
  `ppo_breakdown` says where the time went per iteration: `env_s` (the batched env's
  step, `TanhActions` included), `policy_s` (the rest of the rollout: the forward pass
  for actions and values, a frozen encoder's forward included, sb3's buffer and Python
  loop), `update_s` (sb3's `train()`: the epochs' forward and backward passes);
- `imitation_frames_per_s`: frames per second of behaviour-cloning updates of the cnn
  (`BehaviourCloning.update`, minibatches of `--bc-batch` frames) on expert data
  collected first (`--bc-episodes` lead-brake episodes; `imitation_collect_frames_per_s`
  is the collection's own rate: the staged expert driving the batched backend);
- `config` and `platform` (cores, torch threads, device).

Usage:
    python scripts/bench_training.py                         # cnn, gru, transformer on CPU
    python scripts/bench_training.py --policies cnn --envs 64 --n-steps 32 --updates 2
    python scripts/bench_training.py --device cuda            # networks on the GPU
    python scripts/bench_training.py --no-freeze-encoder      # PPO trains the whole network
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from reflexdrive.policies.registry import shipped_checkpoint  # noqa: E402
from stable_baselines3.common.vec_env import VecEnvWrapper  # noqa: E402

from reflexdrive.common.threads import available_cores  # noqa: E402
from reflexdrive.common.validation import field_default  # noqa: E402
from reflexdrive.train.ppo import (  # noqa: E402
    PPOConfig,
    build_model,
    encoded_env,
    load_init,
    make_env,
    resolved_policy_config,
)

GOAL_STEPS_PER_S = {"cpu": 1_000.0, "cuda": 50_000.0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class TimedSteps(VecEnvWrapper):
    """Adds the wall time of every `step_wait` of the wrapped VecEnv to `seconds`."""

    def __init__(self, venv):
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        start = time.perf_counter()
        result = self.venv.step_wait()
        self.seconds += time.perf_counter() - start
        return result


def ppo_speed(policy: str, args: argparse.Namespace, out: Path) -> dict:
    """Env steps/s of whole PPO iterations of `policy` and where their time went."""
    config = PPOConfig(policy=policy, init=str(shipped_checkpoint(policy)),
                       scenarios=("lead-brake",), num_envs=args.envs, n_steps=args.n_steps,
                       batch_size=args.batch_size, n_epochs=args.epochs,
                       total_timesteps=args.envs * args.n_steps * (args.updates + 1),
                       latency=args.latency, mode="realtime", out_dir=str(out / policy),
                       device=args.device, threads=args.threads, value_warmup_updates=0,
                       target_kl=None, seed=0, freeze_encoder=args.freeze_encoder)
    init = load_init(config)
    policy_config = resolved_policy_config(config, init)
    timed = TimedSteps(make_env(config, policy_config, encode=False))
    env = encoded_env(timed, config, policy_config)
    model = build_model(config, env, policy_config, init)
    _, callback = model._setup_learn(config.total_timesteps, callback=None,
                                     reset_num_timesteps=True, tb_log_name="bench",
                                     progress_bar=False)
    callback.on_training_start(locals(), globals())
    rows = []
    for iteration in range(args.updates + 1):                  # the first one warms up
        timed.seconds = 0.0
        start = time.perf_counter()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        rolled = time.perf_counter()
        model.train()
        done = time.perf_counter()
        if iteration:
            rows.append((rolled - start, timed.seconds, done - rolled))
    env.close()
    rollout, env_s, update = (float(np.mean(column)) for column in zip(*rows))
    steps = config.steps_per_update
    return {"steps_per_s": round(steps / (rollout + update), 1),
            "breakdown": {"env_s": round(env_s, 3), "policy_s": round(rollout - env_s, 3),
                          "update_s": round(update, 3), "steps_per_iteration": steps}}


def imitation_speed(args: argparse.Namespace, out: Path) -> dict:
    """Behaviour-cloning frames/s of the cnn on freshly collected expert data."""
    from reflexdrive.agents.end_to_end import policy_spec
    from reflexdrive.policies.registry import build

    from reflexdrive.train.behaviour_cloning import BehaviourCloning, frame_samples
    from reflexdrive.train.expert_data import CollectionConfig, ShardSpec, collect_shard
    from reflexdrive.train.imitation_config import ImitationConfig

    collection = CollectionConfig(envs=min(args.bc_episodes, 16))
    spec = ShardSpec(round=0, index=0, scenario="lead-brake", first=0,
                     episodes=args.bc_episodes)
    start = time.perf_counter()
    data = collect_shard(spec, collection)
    collect_s = time.perf_counter() - start
    config = ImitationConfig(policy="cnn", batch_size=args.bc_batch)
    policy = build("cnn", policy_spec()["observation"])
    trainer = BehaviourCloning(policy, config, device=args.device)
    samples = frame_samples(np.arange(len(data)))
    rng = np.random.default_rng(0)
    times = []
    for step in range(args.bc_updates + 1):                 # the first one warms up
        index = rng.choice(len(samples), size=args.bc_batch, replace=True)
        begin = time.perf_counter()
        trainer.update(data, samples, index, lr=1e-3)
        if step:
            times.append(time.perf_counter() - begin)
    return {"frames_per_s": round(args.bc_batch / float(np.mean(times)), 1),
            "collect_frames_per_s": round(len(data) / collect_s, 1),
            "frames_collected": int(len(data))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--policies", default="cnn,gru,transformer",
                        help="policies to time, comma-separated")
    parser.add_argument("--envs", type=int, default=field_default(PPOConfig, "num_envs"),
                        help="PPO envs (num_envs)")
    parser.add_argument("--n-steps", type=int, default=field_default(PPOConfig, "n_steps"),
                        help="ticks per env per update")
    parser.add_argument("--batch-size", type=int,
                        default=field_default(PPOConfig, "batch_size"), help="PPO minibatch")
    parser.add_argument("--epochs", type=int, default=field_default(PPOConfig, "n_epochs"),
                        help="PPO epochs per update")
    parser.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction,
                        default=field_default(PPOConfig, "freeze_encoder"),
                        help="PPOConfig.freeze_encoder: the encoder frozen, its features "
                             "computed once per step")
    parser.add_argument("--updates", type=int, default=2,
                        help="timed PPO iterations (after one warm-up)")
    parser.add_argument("--latency", default="fixed:0.03", help="the clock's latency")
    parser.add_argument("--bc-episodes", type=int, default=16,
                        help="expert episodes collected for the imitation timing")
    parser.add_argument("--bc-batch", type=int, default=128, help="imitation minibatch")
    parser.add_argument("--bc-updates", type=int, default=20, help="timed imitation updates")
    parser.add_argument("--skip-imitation", action="store_true")
    parser.add_argument("--device", default="cpu", help="torch device of the networks")
    parser.add_argument("--threads", type=int, default=field_default(PPOConfig, "threads"),
                        help="torch CPU threads (PPO's and imitation's default)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    policies = [name for name in args.policies.split(",") if name]
    result: dict = {"ppo_steps_per_s": {}, "ppo_breakdown": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name in policies:
            log(f"ppo {name}: {args.updates} + 1 iterations of {args.envs} x {args.n_steps} "
                "steps ...")
            speed = ppo_speed(name, args, Path(folder))
            result["ppo_steps_per_s"][name] = speed["steps_per_s"]
            result["ppo_breakdown"][name] = speed["breakdown"]
        if not args.skip_imitation:
            log(f"imitation: {args.bc_episodes} expert episodes, {args.bc_updates} updates ...")
            imitation = imitation_speed(args, Path(folder))
            result["imitation_frames_per_s"] = imitation["frames_per_s"]
            result["imitation_collect_frames_per_s"] = imitation["collect_frames_per_s"]
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    if "cnn" in result["ppo_steps_per_s"]:
        result["goal_ppo_steps_per_s"] = GOAL_STEPS_PER_S[device]
        result["meets_goal"] = result["ppo_steps_per_s"]["cnn"] >= GOAL_STEPS_PER_S[device]
    result["config"] = {key: value for key, value in vars(args).items()}
    result["platform"] = {"cores": available_cores(), "torch_threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine(),
                          "device": (torch.cuda.get_device_name() if device == "cuda"
                                     else "cpu")}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
