"""`reflexdrive run --execution pipelined` end to end, on both backends, with twins.

The staged stack at `fixed:perception=0.06,planning=0.05`, T = 100 ms: sequential, every
decision overruns (110 ms) and every other frame is dropped (5 decisions/s); pipelined,
every frame is decided, each command lands 110 ms old (10 decisions/s, less the last
frame still in flight when the episode ends), nothing overruns, and the reaction's compute
is the responding command's age, 110 ms. Both backends run the same clock contract and
give the same episodes.
"""

from __future__ import annotations

import pytest

from reflexdrive.run.runner import RunConfig, run

LATENCY = "fixed:perception=0.06,planning=0.05"
DURATION_S = 6.0


def episodes(backend: str, execution: str):
    config = RunConfig(scenario="lead-brake", stack="staged", episodes=2, seed=0,
                       latency=LATENCY, execution=execution, backend=backend,
                       scenario_config={"duration_s": DURATION_S})
    assert config.runs_twins
    frame, _ = run(config, out=None, progress=False)
    return frame.sort_values("seed").reset_index(drop=True)


@pytest.fixture(scope="module")
def pipelined():
    return {backend: episodes(backend, "pipelined") for backend in ("batched", "highway")}


def test_pipelined_decides_every_tick_each_command_110_ms_old(pipelined):
    for backend, frame in pipelined.items():
        assert (frame["dropped_frames"] == 0).all(), backend
        assert (frame["overrun_rate"] == 0.0).all(), backend
        assert frame["decision_age_s"].to_numpy() == pytest.approx(0.11, abs=1e-9)
        ticks = round(DURATION_S * 10)
        landed = frame["decision_rate_hz"] * frame["duration_s"]
        assert ((landed > ticks - 3) & (landed <= ticks)).all(), backend
        reacted = frame["reaction_compute_s"].dropna()
        assert len(reacted) > 0, backend
        assert reacted.to_numpy() == pytest.approx(0.11, abs=1e-9)


def test_both_backends_give_the_same_pipelined_episodes(pipelined):
    columns = ["seed", "reaction_time_s", "reaction_compute_s", "decision_age_s",
               "decision_rate_hz", "dropped_frames", "overrun_rate", "collided"]
    batched, highway = (pipelined[b] for b in ("batched", "highway"))
    for column in columns:
        assert batched[column].astype(float).to_numpy() == pytest.approx(
            highway[column].astype(float).to_numpy(), abs=1e-9, nan_ok=True), column


def test_sequential_overruns_and_halves_the_decision_rate():
    frame = episodes("batched", "sequential")
    assert (frame["overrun_rate"] == 1.0).all()
    assert frame["decision_age_s"].to_numpy() == pytest.approx(0.11, abs=1e-9)
    assert (frame["decision_rate_hz"] <= 5.0 + 1e-9).all()
    assert (frame["dropped_frames"] > 0).all()
