"""scripts/eval_staged.py on the hazards on curves: the goals it reports from the staged
stack's and the reference driver's episodes of the same seeds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_staged.py"


@pytest.fixture(scope="module")
def eval_staged():
    spec = importlib.util.spec_from_file_location("eval_staged_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _frame(collided, offroad=None):
    n = len(collided)
    return pd.DataFrame({"seed": range(95000, 95000 + n), "collided": collided,
                         "offroad": offroad or [False] * n})


def test_goals_count_collisions_where_the_reference_driver_avoids_one(eval_staged):
    staged = _frame([True, True, False, False])
    reference = _frame([True, False, False, True])
    result = eval_staged.hazard_goals(staged, reference)
    assert result["staged_collides_where_reference_avoids"] == [95001]
    assert result["goals"] == {"collisions==0": False, "offroad_pct==0": True,
                               "no_collision_where_reference_avoids": False}
    clean = eval_staged.hazard_goals(_frame([False] * 3, [False, True, False]),
                                     _frame([True] * 3))
    assert clean["goals"] == {"collisions==0": True, "offroad_pct==0": False,
                              "no_collision_where_reference_avoids": True}


def test_hazards_on_curves_are_accepted_and_others_refused(eval_staged):
    from reflexdrive.common.validation import ConfigError

    assert eval_staged.CURVED_HAZARDS == ("stopped-vehicle-curve", "intersection-cross-traffic")
    args = type("Args", (), {"scenarios": "merge,lead-brake", "episodes": 1, "seed": 0,
                             "envs": 1})()
    with pytest.raises(ConfigError, match="scenarios.*intersection-cross-traffic"):
        eval_staged.curved_scenarios(args)
