"""`reflexdrive` with your own stack and stages: a stage swapped by a factory drives, and a
factory that cannot work is one line and exit 2."""

from __future__ import annotations

import pandas as pd
import pytest

from reflexdrive.cli import main

BRAKING_CONTROLLER = '''
import numpy as np

class Brake:
    """Brakes at 3 m/s^2 and holds the wheel straight, whatever the plan."""
    def __init__(self, tick_s):
        self.tick_s = tick_s
    def reset(self, done):
        pass
    def __call__(self, plan, ego):
        return np.tile(np.array([[-3.0, 0.0]], np.float32), (len(ego), 1))

def make(tick_s):
    return Brake(tick_s)

def make_list():
    return []
'''


def test_a_controller_factory_replaces_the_staged_stacks_control(capsys, tmp_path,
                                                                  user_module):
    spec = f"{user_module(BRAKING_CONTROLLER)}:make"
    out = tmp_path / "run"
    code = main(["run", "--controller", spec, "--scenario", "lead-brake", "--episodes", "1",
                 "--mode", "lockstep", "--latency", "fixed:0", "--no-twins",
                 "--set", "duration_s=2", "--set", "onset_s=[1,1]", "--out", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    ticks = pd.read_csv(out / "ticks.csv")
    observed = ticks[ticks["observed"].astype(bool)]
    assert len(observed) == 20                                  # 2 s of 10 Hz decisions
    assert (observed["accel_cmd_mps2"] == -3.0).all()
    assert (observed["steer_cmd_rad"] == 0.0).all()
    # lockstep: each command acts for its whole tick, so the speed falls 0.3 m/s a tick
    speeds = observed["speed_mps"].to_numpy()
    assert speeds[:-1] - speeds[1:] == pytest.approx([0.3] * 19, abs=1e-6)


@pytest.mark.parametrize("args, needle", [
    (["--stack", "no_module_of_that_name:make"],
     "stack='no_module_of_that_name:make' is invalid: cannot import module "
     "'no_module_of_that_name': No module named 'no_module_of_that_name'"),
    (["--tracker", "sort"], "tracker='sort' is invalid: allowed values are kalman, identity, "
                            "or package.module:factory"),
    (["--planner", "lattice"], "planner='lattice' is invalid: allowed values are "
                               "mobil-frenet, or package.module:factory"),
    (["--controller", "{module}:make_list"],
     "controller='{module}:make_list' is invalid: returned a list, not a callable "
     "controller(plan, ego) -> actions (N, 2) with reset(done)"),
    (["--stack", "{module}:make_list"],
     "stack='{module}:make_list' is invalid: returned a list, not an Agent: needs name, "
     "stage_names, reset(done), act(obs, info)"),
])
@pytest.mark.parametrize("command", ["run", "compare", "profile"])
def test_a_factory_that_cannot_work_is_one_line(capsys, tmp_path, user_module, args, needle,
                                                command):
    module = user_module(BRAKING_CONTROLLER)
    args = [arg.format(module=module) for arg in args]
    if command == "compare":
        args = [{"--stack": "--stacks"}.get(arg, arg) for arg in args]
        args += ["--scenarios", "lead-brake", "--episodes", "1", "--modes", "lockstep",
                 "--latency", "fixed:0", "--extra-latency", "0"]
    if command == "run":
        args += ["--episodes", "1"]
    if command == "compare" and "cannot import" in needle:     # a config-time check
        needle = needle.replace("stack=", "stacks=", 1)
    out = tmp_path / ("profile.json" if command == "profile" else "out")
    code = main([command, *args, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("reflexdrive: error: ") and err.count("\n") == 1, err
    assert needle.format(module=module) in err
    if command != "run":                    # (a run builds its stack in its out folder)
        assert not out.exists()                                 # nothing written
