"""EndToEndAgent: one forward pass per tick, per-env state, devices, the stacks and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reflexdrive.agents.end_to_end import EndToEndAgent, build_end_to_end, policy_spec
from reflexdrive.agents.registry import END_TO_END_STACKS, STACKS, make_agent
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.gym.single import observation_space
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.policies.checkpoint import CheckpointError, observation_spec
from reflexdrive.policies.registry import POLICIES, build, save_policy, shipped_checkpoint

from reflexdrive.cli import main
from reflexdrive.common.threads import cpu_threads
from reflexdrive.common.validation import ConfigError
from reflexdrive.run.runner import RunConfig, run

SPEC = policy_spec()
SMALL = {"cnn": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}},
         "gru": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                 "hidden_size": 16},
         "lstm": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                  "hidden_size": 16, "layers": 2},
         "transformer": {"encoder": {"d_model": 16, "heads": 2, "patch_size": 16}}}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build(name, SPEC["observation"], **SMALL[name])


def observations(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """What a vector env returns: numpy, uint8 rasters of 0/255, float32 ego, plus lidar."""
    rng = np.random.default_rng(seed)
    ego = rng.normal([22, 0, 0, 0, 0, 1, 4, 1], [5, 1, 0.05, 0.5, 0.05, 1, 0, 0], (n, 8))
    return {"bev": (rng.random((n, 4, 64, 64)) > 0.8).astype(np.uint8) * 255,
            "ego": ego.astype(np.float32),
            "lidar": np.stack([rng.uniform(2, 48, (n, 64)), rng.normal(0, 8, (n, 64))],
                              axis=-1).astype(np.float32)}


def saved(tmp_path, name: str = "cnn"):
    return save_policy(tmp_path / f"{name}.pt", small(name), SPEC,
                       meta={"command": "test"})


def test_policy_spec_describes_the_env_observations():
    space = observation_space(SensorConfig())
    keys = ("bev", "ego", "lidar", "route", "timing")
    assert SPEC["observation"] == observation_spec(space.spaces, keys=keys)
    assert policy_spec(SensorConfig(range_m=32.0))["observation"]["bev"]["shape"] == [4, 48, 64]


def test_stacks_are_registered():
    assert tuple(POLICIES) == ("cnn", "gru", "lstm", "transformer")
    assert END_TO_END_STACKS == (*POLICIES, "cnn-blind")
    assert set(END_TO_END_STACKS) < set(STACKS)


# ----------------------------------------------------------------------------- agent


@pytest.mark.parametrize("name", ["cnn", "gru", "lstm", "transformer"])
def test_one_forward_pass_per_tick_for_all_envs(name):
    policy = small(name)
    agent = EndToEndAgent(policy, device="cpu")
    calls = []
    policy.register_forward_hook(lambda module, args, out: calls.append(args[0]["bev"].shape[0]))
    agent.reset(np.ones(5, bool))
    reference, state = None, None
    for tick in range(3):
        obs = observations(5, seed=tick)
        decision = agent.act(obs, {})
        assert calls == [5] * (tick + 1)
        assert decision.actions.shape == (5, 2) and decision.actions.dtype == np.float32
        assert set(decision.stage_latency_s) == {"policy"} and decision.latency_s > 0
        assert decision.products == {}
        with torch.inference_mode():                 # the same as the policy called directly
            reference, state = policy({k: torch.from_numpy(v) for k, v in obs.items()}, state)
        calls.pop()                                  # that call was the test's own
        np.testing.assert_allclose(decision.actions, reference.numpy(), atol=1e-6)
    assert agent.name == name and agent.stage_names == ("policy",)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_reset_touches_only_the_envs_done(name):
    agent = EndToEndAgent(small(name), device="cpu")
    twin = EndToEndAgent(small(name), device="cpu")           # never reset after the start
    for a in (agent, twin):
        a.reset(np.ones(3, bool))
    for tick in range(3):
        for a in (agent, twin):
            a.act(observations(3, seed=tick), {})
    before = tuple(s.clone() for s in agent.state)
    agent.reset(np.array([False, True, False]))
    for old, new in zip(before, agent.state):
        assert torch.equal(new[:, 1], torch.zeros_like(new[:, 1]))
        assert torch.equal(new[:, [0, 2]], old[:, [0, 2]])
    obs = observations(3, seed=9)
    actions, twin_actions = agent.act(obs, {}).actions, twin.act(obs, {}).actions
    np.testing.assert_array_equal(actions[[0, 2]], twin_actions[[0, 2]])
    fresh = EndToEndAgent(small(name), device="cpu")
    fresh_action = fresh.act({k: v[1:2] for k, v in obs.items()}, {}).actions
    np.testing.assert_allclose(actions[1], fresh_action[0], atol=1e-6)
    # a new batch size starts from zeros (a new run), no error
    assert agent.act(observations(2), {}).actions.shape == (2, 2)
    assert agent.state[0].shape[1] == 2


def test_transformer_explains_its_attention_when_asked():
    agent = EndToEndAgent(small("transformer"), device="cpu")
    obs = observations(4)
    plain = agent.act(obs, {})
    assert plain.products == {}
    agent.explain = True
    explained = agent.act(obs, {})
    attention = explained.products["attention"]
    assert attention.shape == (4, 4, 4) and attention.dtype == np.float32
    assert (attention >= 0).all() and (attention.sum(axis=(1, 2)) <= 1 + 1e-5).all()
    np.testing.assert_allclose(explained.actions, plain.actions, atol=1e-6)
    cnn = EndToEndAgent(small("cnn"), device="cpu")
    cnn.explain = True
    assert cnn.act(obs, {}).products == {}


# ----------------------------------------------------------------------------- distinct rows


def _shipped_or_small(name: str) -> EndToEndAgent:
    """The shipped checkpoint's agent (the real layer shapes the kernels see); lstm, which
    ships none, small."""
    if name == "lstm":
        return EndToEndAgent(small(name), device="cpu")
    return build_end_to_end(name, device="cpu")


def _with_repeats(rows: int, distinct: int, rng: np.random.Generator, seed: int
                  ) -> dict[str, np.ndarray]:
    """`rows` observations: `distinct` different ones, each at least once, shuffled."""
    base = observations(distinct, seed=seed)
    pick = np.concatenate([np.arange(distinct), rng.integers(0, distinct, rows - distinct)])
    rng.shuffle(pick)
    return {key: value[pick] for key, value in base.items()}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["cnn", "gru", "transformer", "lstm"])
def test_repeated_rows_run_once_with_the_bits_of_every_row(name, threads):
    """A batch of whole 64-row chunks runs its distinct rows once (padded to whole chunks)
    and gives every row the bytes, actions and state, that running every row gives: with
    repeats, with fewer distinct rows than a chunk, with none repeated; at 1 and 2
    threads; over ticks where repeated observations meet different recurrent states."""
    deduped, every = _shipped_or_small(name), _shipped_or_small(name)
    every._distinct = lambda arrays, rows: None               # every row, as before
    calls: list[int] = []
    deduped.policy.register_forward_hook(
        lambda module, args, out: calls.append(args[0]["bev"].shape[0]))
    rng = np.random.default_rng(7)
    # (rows, distinct observations, rows of the first tick's forward pass)
    cases = [(512, 448, 448), (512, 20, 64), (512, 512, 512), (128, 70, 128), (128, 1, 64)]
    with cpu_threads(threads):
        for case, (rows, distinct, computed) in enumerate(cases):
            for tick in range(2):
                obs = _with_repeats(rows, distinct, rng, seed=10 * case + tick)
                a, b = deduped.act(obs, {}), every.act(obs, {})
                assert a.actions.tobytes() == b.actions.tobytes(), (case, tick)
                for mine, theirs in zip(deduped.state, every.state):
                    assert mine.numpy().tobytes() == theirs.numpy().tobytes(), (case, tick)
                if tick == 0 or not deduped.state:            # stateless: the obs decide
                    assert calls[-1] == computed, (case, tick)
                assert calls[-1] % 64 == 0 and calls[-1] <= rows
            deduped.reset(np.ones(rows, bool))
            every.reset(np.ones(rows, bool))


def test_small_batches_explain_and_odd_batches_run_every_row():
    """Under 64 rows, rows that are not whole chunks, and `explain`: every row runs (the
    kernels' last bits depend on the row count there)."""
    agent = EndToEndAgent(small("transformer"), device="cpu")
    calls: list[int] = []
    agent.policy.register_forward_hook(
        lambda module, args, out: calls.append(args[0]["bev"].shape[0]))
    rng = np.random.default_rng(0)
    for rows in (2, 63, 100, 129):
        agent.act(_with_repeats(rows, 1, rng, seed=rows), {})
        assert calls[-1] == rows
    agent.act(_with_repeats(128, 3, rng, seed=0), {})
    assert calls[-1] == 64
    agent.explain = True                                  # the eager explain path, all rows
    explained = agent.act(_with_repeats(128, 3, rng, seed=0), {})
    assert explained.products["attention"].shape[0] == explained.actions.shape[0] == 128


def test_observations_must_fit_the_policy(tmp_path):
    agent = EndToEndAgent(small("cnn"), device="cpu")
    obs = observations(2)
    with pytest.raises(ValueError, match=r"reads uint8 bev \(N, 4, 64, 64\), float32 ego "
                                         r"\(N, 8\), float32 lidar \(N, 64, 2\); got uint8 "
                                         r"bev \(2, 4, 48, 64\)"):
        agent.act({**obs, "bev": obs["bev"][:, :, :48]}, {})
    with pytest.raises(ValueError, match=r"got .* no lidar"):
        agent.act({"bev": obs["bev"], "ego": obs["ego"]}, {})
    with pytest.raises(ValueError, match="got float32 bev"):
        agent.act({**obs, "bev": obs["bev"].astype(np.float32)}, {})
    loaded = EndToEndAgent.from_checkpoint(saved(tmp_path), device="cpu")
    with pytest.raises(CheckpointError, match="cnn.pt: trained on other observations"):
        loaded.act({**obs, "ego": obs["ego"][:, :6]}, {})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_errors():
    policy = small("cnn")
    with pytest.raises(ConfigError, match="device='cuda' is invalid: CUDA is not available"):
        EndToEndAgent(policy, device="cuda")
    with pytest.raises(ConfigError, match="bf16=True is invalid: needs a CUDA device"):
        EndToEndAgent(policy, device="cpu", bf16=True)
    with pytest.raises(ConfigError, match="cuda_graph=True is invalid: needs a CUDA device"):
        EndToEndAgent(policy, device="auto", cuda_graph=True)
    assert EndToEndAgent(policy, device="auto").device.type == "cpu"


def test_bad_options():
    with pytest.raises(ConfigError, match="device='tpu' is invalid: allowed values are auto, "
                                          "cpu, cuda"):
        EndToEndAgent(small("cnn"), device="tpu")
    with pytest.raises(ConfigError, match="bf16='yes' is invalid: must be True or False"):
        EndToEndAgent(small("cnn"), device="cpu", bf16="yes")
    with pytest.raises(ConfigError, match="policy='Linear' is invalid"):
        EndToEndAgent(torch.nn.Linear(2, 2), device="cpu")


# ----------------------------------------------------------------------------- stacks


def test_make_agent_loads_checkpoints(tmp_path):
    path = saved(tmp_path, "gru")
    agent = make_agent("gru", checkpoint=str(path), device="cpu", seed=3,
                       perception="oracle", controller="pure-pursuit")   # what the runner passes
    assert isinstance(agent, EndToEndAgent) and agent.policy.is_recurrent
    assert agent.checkpoint.meta["command"] == "test"
    with pytest.raises(CheckpointError, match="holds a 'gru' policy, not a 'cnn' one; use "
                                              "--stack gru"):
        make_agent("cnn", checkpoint=path, device="cpu")
    with pytest.raises(ConfigError, match="checkpoint=.* is invalid: the staged stack loads no "
                                          "policy checkpoint"):
        make_agent("staged", checkpoint=path)
    with pytest.raises(CheckpointError, match="sensors.range_m: checkpoint 48.0, env 32.0"):
        build_end_to_end("gru", checkpoint=path, device="cpu",
                         sensors=SensorConfig(range_m=32.0))
    with pytest.raises(CheckpointError, match="no such file"):
        make_agent("lstm", checkpoint=tmp_path / "nope.pt", device="cpu")


@pytest.mark.skipif(shipped_checkpoint("lstm").exists(), reason="an lstm checkpoint ships")
def test_missing_shipped_checkpoint_says_how_to_train_it():
    with pytest.raises(CheckpointError, match=r"the shipped lstm checkpoint is missing: train "
                                              r"it with `reflexdrive train --policy lstm "
                                              r"--method dagger --out DIR` and copy "
                                              r"DIR/lstm.pt to policies/checkpoints/lstm.pt"):
        make_agent("lstm", device="cpu")


def test_cnn_stack_drives_a_real_env(tmp_path):
    path = saved(tmp_path, "cnn")
    agent = make_agent("cnn", checkpoint=str(path), device="cpu")
    env = BatchedDrivingEnv(num_envs=3, scenario="highway", mode="lockstep")
    try:
        obs, info = env.reset(seed=0)
        agent.reset(np.ones(3, bool))
        for _ in range(5):
            decision = agent.act(obs, info)
            assert decision.actions.shape == (3, 2)
            obs, _, terminated, truncated, info = env.step(decision.actions)
            agent.reset(terminated | truncated)
    finally:
        env.close()


def test_runner_runs_an_end_to_end_stack(tmp_path):
    path = saved(tmp_path, "gru")
    config = RunConfig(scenario="lead-brake", stack="gru", episodes=2, envs=2, mode="lockstep",
                       checkpoint=str(path), scenario_config={"duration_s": 1.0,
                                                              "onset_s": (0.5, 0.5)})
    episodes, ticks = run(config, progress=False)
    assert episodes["seed"].tolist() == [0, 1] and (episodes["stack"] == "gru").all()
    assert len(ticks) == 20 and ticks["accel_cmd_mps2"].notna().all()
    assert "checkpoint" in config.identity()
    assert "checkpoint" not in RunConfig(scenario="lead-brake").identity()
    with pytest.raises(ConfigError, match="the staged stack loads no policy checkpoint"):
        RunConfig(stack="staged", checkpoint=str(path))


# ----------------------------------------------------------------------------- CLI


def cli(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", ["run", "profile"])
def test_cli_checkpoint_errors(capsys, tmp_path, command):
    base = [command, "--out", str(tmp_path / "out"), "--no-progress"]
    code, _, err = cli(capsys, base + ["--stack", "staged", "--checkpoint", "x.pt"])
    assert code == 2 and err.count("\n") == 1
    assert "checkpoint='x.pt' is invalid: the staged stack loads no policy checkpoint" in err
    code, _, err = cli(capsys, base + ["--stack", "cnn", "--episodes", "1",
                                       "--checkpoint", str(tmp_path / "missing.pt")])
    assert code == 2 and err.count("\n") == 1 and "missing.pt: no such file" in err
    assert "Traceback" not in err


def test_cli_profile_of_an_end_to_end_stack(capsys, tmp_path):
    path = saved(tmp_path, "cnn")
    out = tmp_path / "cnn.json"
    code, stdout, err = cli(capsys, ["profile", "--stack", "cnn", "--checkpoint", str(path),
                                     "--scenario", "lead-brake", "--episodes", "1",
                                     "--warmup", "5", "--no-progress", "--out", str(out)])
    assert code == 0, err
    assert "policy" in stdout and out.exists()
    from reflexdrive.envs.latency import load_profile

    profile = load_profile(out)
    assert tuple(profile.stages) == ("policy",) and profile.batch_size == 1
    assert profile.meta["options"]["checkpoint"] == str(path)


# ----------------------------------------------------------------------------- CUDA


def _ticks(agent: EndToEndAgent, n: int, ticks: int = 4) -> list[np.ndarray]:
    actions = []
    for tick in range(ticks):
        if tick == 2:
            agent.reset(np.arange(n) % 2 == 0)
        actions.append(agent.act(observations(n, seed=tick), {}).actions)
    return actions


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["cnn", "gru", "lstm", "transformer"])
def test_cuda_graph_equals_eager(name):
    eager = EndToEndAgent(small(name), device="cuda")
    graphed = EndToEndAgent(small(name), device="cuda", cuda_graph=True)
    for n in (5, 3):                                  # a new batch size captures a new graph
        for a, b in zip(_ticks(eager, n), _ticks(graphed, n)):
            np.testing.assert_allclose(a, b, atol=1e-4)
    on_cpu = EndToEndAgent(small(name), device="cpu")
    for a, b in zip(_ticks(on_cpu, 3), _ticks(EndToEndAgent(small(name), device="cuda"), 3)):
        np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["cnn", "gru", "lstm", "transformer"])
@pytest.mark.parametrize("graph", [False, True])
def test_bf16_stays_close_and_inside_the_bounds(name, graph):
    reference = EndToEndAgent(small(name), device="cuda")
    bf16 = EndToEndAgent(small(name), device="cuda", bf16=True, cuda_graph=graph)
    for a, b in zip(_ticks(reference, 4), _ticks(bf16, 4)):
        assert b.dtype == np.float32
        assert (b[:, 0] >= -8).all() and (b[:, 0] <= 4).all() and (np.abs(b[:, 1]) <= 0.5).all()
        np.testing.assert_allclose(a, b, atol=0.05)
