"""Tests for envs.scenarios: the seeded generators and their configs (pure, no stepping).

`generate(name, config, seed, f)` must be a pure function of its inputs, respect every
config knob (severity, density, speeds) and never start an episode with overlapping
vehicles. Only the road builder of highway-env is used (to place vehicles in the world
frame for the overlap check); nothing is simulated.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from reflexdrive.envs.backends.highway import build_road
from reflexdrive.envs.scenarios import (
    EGO_START_S,
    HAZARD_KINDS,
    SCENARIOS,
    VEHICLE_LENGTH_M,
    HazardPlan,
    RoadSpec,
    ScenarioInit,
    VehicleInit,
    generate,
    lane_change_duration_s,
    make_config,
    scenario_spec,
    sinusoidal_lane_change,
    without_hazard,
)

from reflexdrive.common.validation import ConfigError

F = 50
"""Simulation frequency [Hz] used unless a test says otherwise."""
SEEDS = tuple(range(10))
NAMES = tuple(SCENARIOS)
STRAIGHT = tuple(name for name, spec in SCENARIOS.items() if spec.straight)
HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")


def _gen(name: str, seed: int = 0, f: int = F, **overrides) -> ScenarioInit:
    return generate(name, make_config(name, overrides), seed, f)


# ----------------------------------------------------------------------------- registry


def test_registry_covers_every_scenario():
    assert set(NAMES) == {"highway", "merge", "roundabout", "intersection", "lead-brake",
                          "cut-in", "stopped-vehicle", "stopped-vehicle-curve",
                          "intersection-cross-traffic"}
    assert set(STRAIGHT) == {"highway", "lead-brake", "cut-in", "stopped-vehicle"}
    for name, spec in SCENARIOS.items():
        assert spec.name == name
        assert spec.env_id.startswith("reflexdrive/") and spec.env_id.endswith("-v0")
        assert spec.hazard in HAZARD_KINDS
        assert isinstance(spec.config_type(), spec.config_type)
    assert len({spec.env_id for spec in SCENARIOS.values()}) == len(SCENARIOS)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_init(name):
    config = make_config(name)
    for seed in SEEDS:
        first = generate(name, config, seed, F)
        second = generate(name, make_config(name), seed, F)
        assert first == second
        assert first.seed == seed and first.name == name and first.simulation_frequency == F
        assert first.duration_s == config.duration_s
        assert first.duration_substeps == round(config.duration_s * F)


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_different_inits(name):
    config = make_config(name)
    inits = [generate(name, config, seed, F) for seed in SEEDS]
    contents = {(init.vehicles, init.hazard) for init in inits}
    assert len(contents) == len(SEEDS)


def test_generate_does_not_touch_global_rng():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    _gen("highway", seed=5)
    assert np.random.random() == expected


# ----------------------------------------------------------------------------- layout


@pytest.mark.parametrize("name", NAMES)
def test_ego_is_slot_zero(name):
    for seed in SEEDS:
        init = _gen(name, seed)
        behaviors = [v.behavior for v in init.vehicles]
        assert behaviors[0] == "ego"
        assert behaviors.count("ego") == 1
        assert set(behaviors) <= {"ego", "idm", "static"}


def _footprints(init: ScenarioInit) -> list[np.ndarray]:
    """Each vehicle's four corners in the world frame (highway-env's lanes, no simulation)."""
    road = build_road(init.road, init.seed)
    corners = []
    for v in init.vehicles:
        lane = road.network.get_lane(v.lane)
        centre = np.asarray(lane.position(v.s_m, 0.0))
        heading = lane.heading_at(v.s_m)
        forward = np.array([math.cos(heading), math.sin(heading)])
        left = np.array([-forward[1], forward[0]])
        half_l, half_w = 0.5 * v.length_m, 0.5 * v.width_m
        corners.append(np.array([centre + sx * half_l * forward + sy * half_w * left
                                 for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))]))
    return corners


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals (touching counts as apart)."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() + 1e-9 or pb.max() <= pa.min() + 1e-9:
                return False
    return True


def test_overlap_helper():
    square = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])
    assert _overlap(square, square + 1.5)
    assert not _overlap(square, square + 2.5)
    assert not _overlap(square, square + np.array([2.0, 0.0]))  # touching


@pytest.mark.parametrize("name", NAMES)
def test_no_initial_overlap(name):
    for seed in SEEDS[:5]:
        init = _gen(name, seed)
        bodies = _footprints(init)
        for i in range(len(bodies)):
            for j in range(i + 1, len(bodies)):
                assert not _overlap(bodies[i], bodies[j]), (
                    f"{name} seed {seed}: vehicles {i} {init.vehicles[i]} and "
                    f"{j} {init.vehicles[j]} overlap at the start")


@pytest.mark.parametrize("name", STRAIGHT)
def test_straight_roads_respect_min_spacing(name):
    config = make_config(name, {"vehicles": 40, "min_spacing_m": 25.0})
    for seed in SEEDS[:5]:
        init = generate(name, config, seed, F)
        assert init.road.kind == "straight" and init.road.lanes == config.lanes
        traffic = [v for slot, v in enumerate(init.vehicles) if slot
                   and v.behavior == "idm" and slot != init.hazard.vehicle]
        by_lane: dict[int, list[float]] = {}
        for v in init.vehicles:
            assert v.lane[:2] == ("0", "1") and 0 <= v.lane[2] < config.lanes
            by_lane.setdefault(v.lane[2], []).append(v.s_m)
        for lane, positions in by_lane.items():
            gaps = np.diff(np.sort(positions))
            # Ego and hazard vehicle are placed by the scenario; traffic keeps min_spacing_m
            # from everyone in its lane.
            assert np.all(gaps >= VEHICLE_LENGTH_M), (name, seed, lane, positions)
        for v in traffic:
            others = [o.s_m for o in init.vehicles if o is not v and o.lane == v.lane]
            assert all(abs(v.s_m - s) >= config.min_spacing_m for s in others)


# ----------------------------------------------------------------------------- hazards


@pytest.mark.parametrize("name", ["lead-brake", "cut-in"])
@pytest.mark.parametrize("f", [F, 20])
def test_hazard_onset_in_range_and_quantised(name, f):
    config = make_config(name)
    low, high = config.onset_s
    onsets = []
    for seed in SEEDS:
        plan = generate(name, config, seed, f).hazard
        assert plan.kind == SCENARIOS[name].hazard
        assert isinstance(plan.onset_substep, int)
        onset_s = plan.onset_substep / f
        # The default bounds are whole substeps, so rounding cannot leave them.
        assert low <= onset_s <= high
        onsets.append(plan.onset_substep)
    assert len(set(onsets)) > 1


@pytest.mark.parametrize("name", ["lead-brake", "cut-in"])
def test_hazard_onset_rounds_to_nearest_substep(name):
    # 0.333 s is not a whole substep: the onset is the nearest substep boundary.
    init = _gen(name, onset_s=(0.333, 0.333))
    assert init.hazard.onset_substep == round(0.333 * F) == 17


@pytest.mark.parametrize("name", ["lead-brake", "stopped-vehicle"])
def test_hazard_vehicle_in_ego_lane_ahead(name):
    for seed in SEEDS:
        init = _gen(name, seed)
        ego, hazard = init.vehicles[0], init.hazard
        assert 0 < hazard.vehicle < len(init.vehicles)
        target = init.vehicles[hazard.vehicle]
        assert target.lane == ego.lane
        assert target.s_m - ego.s_m >= VEHICLE_LENGTH_M
        # Nothing else in the ego lane: the hazard vehicle is the lead.
        assert [i for i, v in enumerate(init.vehicles) if v.lane == ego.lane] == [0, hazard.vehicle]


def test_lead_brake_severity():
    config = make_config("lead-brake", {"decel_mps2": (6.0, 9.0), "gap_m": (10.0, 15.0),
                                        "ego_speed_mps": (15.0, 18.0)})
    decels = []
    for seed in SEEDS:
        init = generate("lead-brake", config, seed, F)
        ego, lead = init.vehicles[0], init.vehicles[init.hazard.vehicle]
        assert 6.0 <= init.hazard.decel_mps2 <= 9.0
        gap = lead.s_m - ego.s_m - 0.5 * (lead.length_m + ego.length_m)
        assert 10.0 <= gap <= 15.0
        assert 15.0 <= ego.speed_mps <= 18.0
        assert lead.speed_mps == ego.speed_mps == ego.target_speed_mps == lead.target_speed_mps
        assert lead.behavior == "idm" and not lead.lane_changes
        decels.append(init.hazard.decel_mps2)
    assert len(set(decels)) > 1
    fixed = _gen("lead-brake", decel_mps2=(7.5, 7.5), gap_m=(30.0, 30.0))
    assert fixed.hazard.decel_mps2 == 7.5
    lead = fixed.vehicles[fixed.hazard.vehicle]
    assert lead.s_m - EGO_START_S - VEHICLE_LENGTH_M == pytest.approx(30.0)


def test_cut_in_severity():
    config = make_config("cut-in", {"gap_m": (8.0, 9.0), "slowdown_mps": (4.0, 5.0),
                                    "ego_speed_mps": (20.0, 21.0)})
    for seed in SEEDS:
        init = generate("cut-in", config, seed, F)
        ego, cutter = init.vehicles[0], init.vehicles[init.hazard.vehicle]
        plan = init.hazard
        assert abs(cutter.lane[2] - ego.lane[2]) == 1
        assert plan.target_lane == ego.lane
        gap = cutter.s_m - ego.s_m - 0.5 * (cutter.length_m + ego.length_m)
        assert 8.0 <= gap <= 9.0
        assert 4.0 <= ego.speed_mps - plan.target_speed_mps <= 5.0
        assert 20.0 <= ego.speed_mps <= 21.0
        assert cutter.behavior == "idm" and not cutter.lane_changes
        # No traffic in the ego lane: the cutter is the only one who enters it.
        assert all(v.lane != ego.lane for v in init.vehicles[1:])
    # A slowdown larger than the speed stops the cutter instead of reversing it.
    init = _gen("cut-in", ego_speed_mps=(3.0, 3.0), slowdown_mps=(10.0, 10.0))
    assert init.hazard.target_speed_mps == 0.0


def test_cut_in_lateral_speed_range_is_drawn_last():
    """`lateral_speed_mps` (None by default: highway-env's lane change) draws the peak
    lateral speed after everything else, so the episode is otherwise the default's."""
    default = make_config("cut-in")
    assert default.lateral_speed_mps is None
    profiled = make_config("cut-in", {"lateral_speed_mps": [0.5, 3.0]})
    speeds = []
    for seed in SEEDS:
        plain, init = generate("cut-in", default, seed, F), generate("cut-in", profiled, seed, F)
        assert plain.hazard.lateral_speed_mps is None
        assert dataclasses.replace(init.hazard, lateral_speed_mps=None) == plain.hazard
        assert init.vehicles == plain.vehicles
        speeds.append(init.hazard.lateral_speed_mps)
    assert all(0.5 <= v <= 3.0 for v in speeds) and len(set(speeds)) == len(SEEDS)
    with pytest.raises(ConfigError, match=r"lateral_speed_mps\[0\]=0.0 is invalid"):
        make_config("cut-in", {"lateral_speed_mps": (0.0, 1.0)})


def test_cut_in_uses_both_sides():
    sides = set()
    for seed in range(40):
        init = _gen("cut-in", seed, lanes=3)
        ego, cutter = init.vehicles[0], init.vehicles[init.hazard.vehicle]
        if ego.lane[2] == 1:
            sides.add(cutter.lane[2] - ego.lane[2])
    assert sides == {-1, 1}


def test_stopped_vehicle_geometry():
    config = make_config("stopped-vehicle", {"onset_s": (1.0, 3.0), "trigger_range_m": 60.0})
    for seed in SEEDS:
        init = generate("stopped-vehicle", config, seed, F)
        ego, stopped = init.vehicles[0], init.vehicles[init.hazard.vehicle]
        plan = init.hazard
        assert plan.kind == "stopped_vehicle"
        assert plan.onset_substep is None  # known only once it is in range
        assert plan.trigger_range_m == 60.0
        assert stopped.behavior == "static" and stopped.speed_mps == 0.0
        rear = stopped.s_m - stopped.length_m / 2 - ego.s_m   # from the ego's centre
        assert rear > plan.trigger_range_m  # out of range at the start
        # At its start speed the ego brings its rear into range within the onset interval.
        assert 1.0 <= (rear - plan.trigger_range_m) / ego.speed_mps <= 3.0


def test_non_hazard_scenarios_have_no_hazard():
    for name in ("highway", "merge", "roundabout", "intersection"):
        plan = _gen(name).hazard
        assert plan.kind == "none" and plan.vehicle == -1 and plan.onset_substep is None


# ----------------------------------------------------------------------------- density, speeds


@pytest.mark.parametrize("name", STRAIGHT)
@pytest.mark.parametrize("count", [0, 3, 10])
def test_straight_density(name, count):
    fixed = 1 + (SCENARIOS[name].hazard != "none")  # ego and the hazard vehicle
    for seed in SEEDS[:4]:
        init = _gen(name, seed, vehicles=count)
        assert len(init.vehicles) == fixed + count


def test_crowded_road_places_fewer_without_overlap():
    config = make_config("highway", {"lanes": 1, "vehicles": 200, "min_spacing_m": 50.0})
    init = generate("highway", config, 0, F)
    # One lane of 380 m holds at most 8 centres 50 m apart, ego included.
    assert 1 < len(init.vehicles) <= 8
    positions = np.sort([v.s_m for v in init.vehicles])
    assert np.all(np.diff(positions) >= 50.0)


@pytest.mark.parametrize("lanes", [1, 2, 5])
def test_lane_count(lanes):
    for seed in SEEDS[:4]:
        init = _gen("highway", seed, lanes=lanes)
        assert init.road.lanes == lanes
        assert all(0 <= v.lane[2] < lanes for v in init.vehicles)


@pytest.mark.parametrize("name", ["merge", "roundabout", "intersection"])
@pytest.mark.parametrize("count", [0, 4])
def test_network_density(name, count):
    extra = 1 if name == "merge" else 0  # merge always adds its on-ramp vehicle
    for seed in SEEDS[:4]:
        init = _gen(name, seed, vehicles=count)
        assert init.road.kind == name
        assert len(init.vehicles) == 1 + count + extra


@pytest.mark.parametrize("name", NAMES)
def test_speeds_within_config(name):
    overrides = {"ego_speed_mps": (11.0, 12.0), "traffic_speed_mps": (13.0, 14.0)}
    if name == "stopped-vehicle":
        overrides["onset_s"] = (2.0, 4.0)
    for seed in SEEDS[:5]:
        init = _gen(name, seed, **overrides)
        ego = init.vehicles[0]
        assert 11.0 <= ego.speed_mps <= 12.0
        hazard_slot = init.hazard.vehicle
        for slot, v in enumerate(init.vehicles[1:], start=1):
            if slot == hazard_slot:
                continue
            assert 13.0 <= v.speed_mps <= 14.0, (name, seed, slot, v)
            assert v.target_speed_mps == v.speed_mps


@pytest.mark.parametrize("name", STRAIGHT)
def test_lane_changes_flag(name):
    for flag in (True, False):
        init = _gen(name, 1, lane_changes=flag)
        traffic = [v for slot, v in enumerate(init.vehicles)
                   if slot not in (0, init.hazard.vehicle)]
        assert traffic and all(v.lane_changes is flag for v in traffic)


@pytest.mark.parametrize("name", NAMES)
def test_duration_override(name):
    overrides = {"duration_s": 7.5}
    if "onset_s" in {f.name for f in dataclasses.fields(SCENARIOS[name].config_type)}:
        overrides["onset_s"] = (1.0, 2.0)
    init = _gen(name, **overrides)
    assert init.duration_s == 7.5 and init.duration_substeps == 375


def test_list_overrides_become_tuples():
    config = make_config("lead-brake", {"gap_m": [10.0, 12.0]})
    assert config.gap_m == (10.0, 12.0)
    hash(config)  # frozen and hashable


# ----------------------------------------------------------------------------- invalid configs


@pytest.mark.parametrize(("name", "overrides", "field", "hint"), [
    ("highway", {"duration_s": 0.0}, "duration_s", "(0, 600]"),
    ("highway", {"duration_s": float("nan")}, "duration_s", "NaN"),
    ("highway", {"lanes": 0}, "lanes", "[1, 8]"),
    ("highway", {"vehicles": -1}, "vehicles", "[0, 200]"),
    ("highway", {"min_spacing_m": 5.0}, "min_spacing_m", "[6, 200]"),
    ("highway", {"ego_speed_mps": (30.0, 20.0)}, "ego_speed_mps", "low must not exceed high"),
    ("highway", {"traffic_speed_mps": (10.0, 50.0)}, "traffic_speed_mps[1]", "[0, 40]"),
    ("highway", {"ego_speed_mps": 20.0}, "ego_speed_mps", "(low, high) pair"),
    ("lead-brake", {"decel_mps2": (0.0, 6.0)}, "decel_mps2[0]", "[0.5, 12]"),
    ("lead-brake", {"gap_m": (1.0, 6.0)}, "gap_m[0]", "[2, 200]"),
    ("lead-brake", {"onset_s": (3.0, 20.0)}, "onset_s[1]", "[0, 12]"),
    ("lead-brake", {"onset_s": ("a", 1.0)}, "onset_s[0]", "must be a number"),
    ("cut-in", {"lanes": 1}, "lanes", "at least 2 lanes"),
    ("cut-in", {"slowdown_mps": (-1.0, 2.0)}, "slowdown_mps[0]", "[0, 30]"),
    ("stopped-vehicle", {"trigger_range_m": 0.5}, "trigger_range_m", "[1, 500]"),
    ("merge", {"vehicles": 51}, "vehicles", "[0, 50]"),
    ("roundabout", {"duration_s": -1.0}, "duration_s", "(0, 600]"),
    ("intersection", {"ego_speed_mps": (-1.0, 5.0)}, "ego_speed_mps[0]", "[0, 40]"),
    ("lead-brake", {"bogus": 1}, "lead-brake.bogus", "allowed keys are"),
])
def test_invalid_config_names_field(name, overrides, field, hint):
    with pytest.raises(ConfigError) as excinfo:
        make_config(name, overrides)
    error = excinfo.value
    assert error.field == field
    assert str(error).startswith(f"{field}=")
    assert hint in str(error)
    assert "\n" not in str(error)


def test_invalid_config_direct_construction():
    config_type = scenario_spec("lead-brake").config_type
    with pytest.raises(ConfigError, match=r"^decel_mps2\[1\]="):
        config_type(decel_mps2=(5.0, 13.0))


def test_unknown_scenario():
    with pytest.raises(ConfigError) as excinfo:
        scenario_spec("bogus")
    assert excinfo.value.field == "scenario"
    for name in NAMES:
        assert name in str(excinfo.value)
    with pytest.raises(ConfigError, match="^scenario="):
        generate("bogus", make_config("highway"), 0, F)


def test_generate_rejects_wrong_config_type():
    with pytest.raises(ConfigError, match="must be a LeadBrakeConfig"):
        generate("lead-brake", make_config("highway"), 0, F)


def test_configs_are_frozen():
    config = make_config("highway")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lanes = 2  # type: ignore[misc]


@pytest.mark.parametrize("name, overrides, field, hint", [
    ("highway", {"lanes": 3.0}, "lanes", "must be an integer"),
    ("highway", {"lanes": True}, "lanes", "must be an integer"),
    ("highway", {"vehicles": "3"}, "vehicles", "must be an integer"),
    ("lead-brake", {"duration_s": True}, "duration_s", "must be a number"),
    ("lead-brake", {"duration_s": "3"}, "duration_s", "must be a number"),
    ("cut-in", {"gap_m": (True, 20.0)}, "gap_m[0]", "must be a number"),
    ("stopped-vehicle", {"lane_changes": "no"}, "lane_changes", "must be true or false"),
    ("merge", {"vehicles": 6.0}, "vehicles", "must be an integer"),
])
def test_bools_strings_and_float_counts_are_rejected(name, overrides, field, hint):
    with pytest.raises(ConfigError) as excinfo:
        make_config(name, overrides)
    assert excinfo.value.field == field and hint in str(excinfo.value)


def test_subclasses_keep_their_defaults_and_the_base_rules():
    assert make_config("highway").lanes == 4 and make_config("lead-brake").duration_s == 12.0
    assert make_config("stopped-vehicle").ego_speed_mps == (18.0, 24.0)
    assert make_config("merge").traffic_speed_mps == (20.0, 26.0)
    with pytest.raises(ConfigError, match=r"^lanes=9 is invalid: must lie in \[1, 8\]$"):
        make_config("highway", {"lanes": 9})
    with pytest.raises(ConfigError, match=r"^onset_s\[1\]=13.0 is invalid: must lie in "
                                          r"\[0, 12\]$"):
        make_config("lead-brake", {"onset_s": (3.0, 13.0)})


# ----------------------------------------------------------------------------- lateral speed


def _cut_in_init(lateral_speed, cutter_lane=0, kind="cut_in"):
    ego = VehicleInit(("0", "1", 1), 200.0, 15.0, 15.0, "ego")
    cutter = VehicleInit(("0", "1", cutter_lane), 230.0, 10.0, 10.0, lane_changes=False)
    plan = HazardPlan(kind, 1, 100, target_lane=("0", "1", 1), target_speed_mps=10.0,
                      lateral_speed_mps=lateral_speed)
    return ScenarioInit("cut", 0, 50, RoadSpec(), (ego, cutter), plan, 10.0)


def test_sinusoidal_lane_change_is_osc_sinusoid_with_peak_rate():
    # T = pi w / (2 v): 4 m at 2 m/s peak takes pi s
    assert lane_change_duration_s(2.0, 4.0) == pytest.approx(math.pi)
    assert lane_change_duration_s(0.5, 4.0) == pytest.approx(4.0 * math.pi)
    assert sinusoidal_lane_change(0.0, 2.0, 4.0) == (4.0, 0.0)
    to_go, lateral = sinusoidal_lane_change(math.pi / 2, 2.0, 4.0)      # half way: peak
    assert to_go == pytest.approx(2.0, abs=1e-12) and lateral == pytest.approx(2.0, abs=1e-12)
    to_go, lateral = sinusoidal_lane_change(math.pi / 3, 2.0, 4.0)      # (1 + cos 60°) / 2
    assert to_go == pytest.approx(3.0, abs=1e-12)
    assert lateral == pytest.approx(2.0 * math.sin(math.pi / 3), abs=1e-12)
    assert sinusoidal_lane_change(math.pi, 2.0, 4.0) == (0.0, 0.0)      # ended: exactly
    assert sinusoidal_lane_change(10.0, 2.0, 4.0) == (0.0, 0.0)


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, True, "2"])
def test_lateral_speed_must_be_positive_and_finite(value):
    with pytest.raises(ConfigError, match="hazard.lateral_speed_mps"):
        HazardPlan("cut_in", 1, 10, target_lane=("0", "1", 1), lateral_speed_mps=value)


def test_lateral_speed_only_on_a_cut_in_into_a_neighbouring_lane():
    with pytest.raises(ConfigError, match="only a cut_in"):
        HazardPlan("lead_brake", 1, 10, decel_mps2=6.0, lateral_speed_mps=1.0)
    with pytest.raises(ConfigError, match="hazard.target_lane"):
        _cut_in_init(1.0, cutter_lane=3)                 # two lanes away
    with pytest.raises(ConfigError, match="hazard.target_lane"):
        _cut_in_init(1.0, cutter_lane=1)                 # already there
    assert _cut_in_init(1.0).hazard.lateral_speed_mps == 1.0
    assert _cut_in_init(None, cutter_lane=3).hazard.lateral_speed_mps is None


def test_twin_of_a_lateral_speed_cut_in_has_no_plan():
    twin = without_hazard(_cut_in_init(1.5))
    assert twin.hazard == HazardPlan() and twin.hazard.lateral_speed_mps is None
    assert twin.vehicles == _cut_in_init(1.5).vehicles
