"""Reaction time and outcome metrics of one episode, from its tick records and substeps.

Pure functions over what the clock and the env record (`TickRecord`s, `SubstepOutcome`s):
no env, no agent. Definitions (docs/ARCHITECTURE.md, "Reaction time"):

- **Reaction time** `t_r` (counterfactual, the primary measure): every hazard episode has
  a *twin*, the same episode with the hazard removed (`envs.scenarios.without_hazard`),
  driven by the same stack with the same seed, sensor noise and latency draws. Until the
  hazard reaches the sensors both apply the very same commands. `t_r` is the first time
  `>= t_h` at which the command the episode applies departs from the one its twin applies
  by at least `accel_departure_mps2` or `steer_departure_rad`, minus the onset `t_h`. A
  gentle response counts as much as a hard one: this measures *when* the stack reacted,
  not how hard. Only decisions observed at `t_k >= t_h` count (an earlier one could not
  have seen the hazard), and only if the command lands before the episode (and its twin)
  ends.
- **Brake onset** `brake_onset_s` (the threshold measure, kept for what it is): the first
  time `>= t_h` at which the applied command brakes harder than `decel_threshold_mps2`, or
  steers more than `steer_threshold_rad` away from the steering applied at `t_h`, minus
  `t_h`. It measures braking style as much as reaction: a stack that eases off early
  registers late or never.
- Both decompose exactly: `total = wait + notice + compute` with
  - **wait** `= t_{k0} - t_h`: until the first tick the agent observes at or after onset
    (includes frames dropped because the agent was still busy with an earlier decision);
  - **notice** `= t_{k*} - t_{k0}`: the ticks the stack needs before it responds;
  - **compute** `= lands_{k*} - t_{k*}`: the responding decision's age when its command
    took effect: its latency `L_{k*}` sequential (0 in lockstep, where the world waits);
    pipelined, the sum of its stages plus its waits between them. A pipelined decision
    dropped between stages (or superseded) never takes effect and cannot respond.
- Decision age and rate: the mean age of the commands that took effect in the episode
  (`decision_age_s`) and how many took effect per second (`decision_rate_hz`).
- Outcomes: collision, off-road, min TTC and min gap after onset (whole episode without a
  hazard), peak deceleration, progress, mean absolute jerk, latency p50/p99, overrun rate,
  and `route_exit_reached`: the ego's lane lay on its route's exit road (the road ending at
  its destination: the roundabout's exit lane, the intersection's outgoing road, the
  highway after the merge; `envs.backends.route_exit`) at some substep.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from reflexdrive.common.validation import real, validate_fields
from reflexdrive.envs.clock import TIME_EPS_S, TickRecord
from reflexdrive.envs.clock.contract import command_landings
from reflexdrive.envs.types import CRITICALITY_KEYS, SubstepOutcome


@dataclass(frozen=True)
class ReactionConfig:
    """What counts as a response to a hazard.

    Attributes:
        accel_departure_mps2: reaction: the applied acceleration departs from the twin's by
            at least this much [m/s^2].
        steer_departure_rad: reaction: the applied steering departs from the twin's by at
            least this much [rad].
        decel_threshold_mps2: brake onset: a command with acceleration
            `<= -decel_threshold_mps2` brakes [m/s^2]. Cruise control and IDM following
            stay well above -2 m/s^2.
        steer_threshold_rad: brake onset: a command whose steering differs from the
            steering applied at onset by at least this much swerves [rad].
    """

    accel_departure_mps2: float = real(0.5, low=0.0, high=8.0, low_inclusive=False,
                                       help="reaction: acceleration departure from the "
                                            "twin [m/s^2]")
    steer_departure_rad: float = real(0.02, low=0.0, high=1.0, low_inclusive=False,
                                      help="reaction: steering departure from the twin [rad]")
    decel_threshold_mps2: float = real(2.0, low=0.0, high=8.0, low_inclusive=False,
                                       help="brake onset: braking threshold [m/s^2]")
    steer_threshold_rad: float = real(0.02, low=0.0, high=1.0, low_inclusive=False,
                                      help="brake onset: swerving threshold [rad]")

    def __post_init__(self) -> None:
        validate_fields(self, "reaction.")


@dataclass(frozen=True)
class Reaction:
    """A response to a hazard and its decomposition [s]; `total_s = wait_s + notice_s + compute_s`.

    Attributes:
        total_s: applied response time minus onset `t_h`.
        wait_s: onset to the first tick observed at or after it.
        notice_s: that tick to the tick whose decision responded.
        compute_s: that decision's latency until its command applied.
        tick: index of the responding decision's tick.
        kind: "brake", "steer" or "accelerate" (brake wins over steer, steer over
            accelerate).
    """

    total_s: float
    wait_s: float
    notice_s: float
    compute_s: float
    tick: int
    kind: str


def _decomposed(record: TickRecord, lands_s: float, first: TickRecord, onset_s: float,
                kind: str) -> Reaction:
    return Reaction(total_s=lands_s - onset_s, wait_s=first.t_s - onset_s,
                    notice_s=record.t_s - first.t_s, compute_s=lands_s - record.t_s,
                    tick=record.tick, kind=kind)


def responds(command, steering_at_onset: float, config: ReactionConfig) -> str | None:
    """"brake", "steer" or None: whether `command` crosses the brake-onset thresholds."""
    if command.acceleration <= -config.decel_threshold_mps2 + TIME_EPS_S:
        return "brake"
    if abs(command.steering - steering_at_onset) >= config.steer_threshold_rad - TIME_EPS_S:
        return "steer"
    return None


def departs(command, twin_command, config: ReactionConfig) -> str | None:
    """"brake", "steer", "accelerate" or None: how `command` departs from `twin_command`."""
    accel = command.acceleration - twin_command.acceleration
    if accel <= -config.accel_departure_mps2 + TIME_EPS_S:
        return "brake"
    if abs(command.steering - twin_command.steering) >= config.steer_departure_rad - TIME_EPS_S:
        return "steer"
    if accel >= config.accel_departure_mps2 - TIME_EPS_S:
        return "accelerate"
    return None


def applied_at(records: Sequence[TickRecord], time_s: float):
    """The command applied at `time_s` according to the tick records (None if outside them)."""
    current = None
    for record in records:
        if record.t_s > time_s + TIME_EPS_S:
            break
        current = record
    return None if current is None else current.applied_at(time_s)


def _after_onset(records: Sequence[TickRecord], onset_s: float) -> list[TickRecord]:
    """The decisions observed at or after the onset, in tick order."""
    if not records or not math.isfinite(onset_s):
        return []
    return [r for r in records if r.observed and r.t_s >= onset_s - TIME_EPS_S]


def brake_onset(records: Sequence[TickRecord], onset_s: float, end_s: float,
                config: ReactionConfig = ReactionConfig()) -> Reaction | None:
    """The first braking (or swerving) command after a hazard at `onset_s`, or None.

    Args:
        records: the episode's tick records in tick order.
        onset_s: hazard onset `t_h` [s]; NaN or inf means no hazard (returns None).
        end_s: end of the episode [s]; a response landing after it does not count.
        config: the thresholds (`decel_threshold_mps2`, `steer_threshold_rad`).
    """
    observed = _after_onset(records, onset_s)
    onset_command = applied_at(records, onset_s) if observed else None
    if onset_command is None:
        return None
    landings = command_landings(records)
    for record in observed:
        kind = responds(record.command, onset_command.steering, config)
        if kind is None or record.tick not in landings:   # never took effect (pipelined)
            continue
        if landings[record.tick] > end_s + TIME_EPS_S:
            return None
        return _decomposed(record, landings[record.tick], observed[0], onset_s, kind)
    return None


def counterfactual_reaction(records: Sequence[TickRecord], twin_records: Sequence[TickRecord],
                            onset_s: float, end_s: float, twin_end_s: float,
                            config: ReactionConfig = ReactionConfig()) -> Reaction | None:
    """The reaction to a hazard at `onset_s`: the first departure from the twin, or None.

    The commands are compared where the episode's decisions land (`t_k + L_k`, for the
    decisions observed at or after `t_h`): with the twin's latency draws equal to the
    episode's, the twin's commands switch at the same instants.

    Args:
        records: the episode's tick records in tick order.
        twin_records: its twin's tick records (the hazard removed), in tick order.
        onset_s: hazard onset `t_h` [s]; NaN or inf means no hazard (returns None).
        end_s: end of the episode [s]; a departure landing after it does not count.
        twin_end_s: end of the twin [s]; past it there is nothing to compare with.
        config: the departure thresholds (`accel_departure_mps2`, `steer_departure_rad`).
    """
    observed = _after_onset(records, onset_s)
    landings = command_landings(records)
    for record in observed:
        if record.tick not in landings:     # dropped between pipeline stages, superseded
            continue
        lands_s = landings[record.tick]
        if lands_s > min(end_s, twin_end_s) + TIME_EPS_S:
            return None
        twin_command = applied_at(twin_records, lands_s)
        if twin_command is None:
            return None
        kind = departs(record.command, twin_command, config)
        if kind is not None:
            return _decomposed(record, lands_s, observed[0], onset_s, kind)
    return None


def decision_age_and_rate(records: Sequence[TickRecord], end_s: float) -> tuple[float, float]:
    """`(mean age [s], rate [1/s])` of the commands that took effect by `end_s` [s]: age
    from the decision's `t_k` to its landing (stages plus waits); rate per second of the
    episode. NaN age without any; NaN rate for an empty episode."""
    landings = command_landings(records)
    t_s = {r.tick: r.t_s for r in records if r.observed}
    ages = [lands - t_s[tick] for tick, lands in landings.items()
            if lands <= end_s + TIME_EPS_S and tick in t_s]
    age = float(np.mean(ages)) if ages else math.nan
    return age, (len(ages) / end_s if end_s > 0.0 else math.nan)


@dataclass(frozen=True)
class EpisodeMetrics:
    """One episode's row of `episodes.csv` (metric columns; NaN where undefined).

    Units: seconds, metres, m/s^2, m/s^3. `hazard_onset_s` is NaN without a hazard; the
    `reaction_*` columns (the counterfactual reaction) are NaN when the agent did not
    depart from its twin, or ran without one; `brake_onset_s` is NaN when it never crossed
    the brake-onset thresholds. The `onset_*` columns and `required_decel_mps2` describe
    the hazard at `t_h` (`CRITICALITY_KEYS`, from `info["hazard"]`), `critical` says
    whether it needed a response (docs/ARCHITECTURE.md, "Criticality").
    `route_exit_reached`: the ego entered its route's exit road (`envs.backends.route_exit`;
    always so on a straight road, whose one road is its exit).
    """

    hazard_onset_s: float
    reaction_time_s: float
    reaction_wait_s: float
    reaction_notice_s: float
    reaction_compute_s: float
    reaction_kind: str
    brake_onset_s: float
    critical: bool
    onset_gap_m: float
    onset_ttc_s: float
    onset_headway_s: float
    required_decel_mps2: float
    collided: bool
    offroad: bool
    route_exit_reached: bool
    min_ttc_s: float
    min_gap_m: float
    peak_decel_mps2: float
    progress_m: float
    mean_speed_mps: float
    traffic_mean_speed_mps: float
    mean_abs_jerk_mps3: float
    latency_p50_s: float
    latency_p99_s: float
    overrun_rate: float
    decision_age_s: float
    decision_rate_hz: float
    dropped_frames: int
    ticks: int
    duration_s: float

    def as_row(self) -> dict:
        return asdict(self)


def _finite_min(values: np.ndarray) -> float:
    """Minimum of `values` (inf when empty: nothing ahead, never closing)."""
    return float(values.min()) if values.size else math.inf


def episode_metrics(records: Sequence[TickRecord], substeps: Sequence[SubstepOutcome],
                    onset_s: float, start_speed_mps: float, substep_s: float,
                    config: ReactionConfig = ReactionConfig(), *,
                    twin_records: Sequence[TickRecord] | None = None,
                    twin_end_s: float = math.inf,
                    criticality: Mapping[str, Any] | None = None) -> EpisodeMetrics:
    """All metrics of one episode.

    Args:
        records: tick records in order (all ticks, observed or dropped).
        substeps: per-substep outcomes in order.
        onset_s: hazard onset `t_h` [s], NaN or inf without a hazard (or one never
            triggered; `info["hazard"]["onset_s"]` is inf then).
        start_speed_mps: ego speed at reset [m/s] (to difference the first substep).
        substep_s: substep length `dt` [s].
        config: response thresholds.
        twin_records: the tick records of the episode's hazard-removed twin (None: no
            twin ran, the reaction columns are NaN).
        twin_end_s: when the twin ended [s].
        criticality: the hazard at onset (`CRITICALITY_KEYS`; None or missing keys: NaN,
            not critical).
    """
    end_s = substeps[-1].time_s if substeps else 0.0
    react = None if twin_records is None else counterfactual_reaction(
        records, twin_records, onset_s, end_s, twin_end_s, config)
    onset_brake = brake_onset(records, onset_s, end_s, config)
    criticality = dict(criticality or {})
    times = np.array([s.time_s for s in substeps], dtype=np.float64)
    speeds = np.array([start_speed_mps] + [s.speed for s in substeps], dtype=np.float64)
    acceleration = np.diff(speeds) / substep_s                     # (n,) m/s^2
    jerk = np.diff(acceleration) / substep_s                       # (n-1,) m/s^3
    after = times >= onset_s - TIME_EPS_S if math.isfinite(onset_s) else np.ones_like(times, bool)
    gaps = np.array([s.gap_m for s in substeps], dtype=np.float64)[after]
    ttcs = np.array([s.ttc_s for s in substeps], dtype=np.float64)[after]
    latencies = np.array([r.latency_s for r in records if r.observed], dtype=np.float64)
    traffic = np.array([s.traffic_speed for s in substeps], dtype=np.float64)
    overruns = [r.overrun for r in records if r.observed]
    age_s, rate_hz = decision_age_and_rate(records, end_s)
    nan = math.nan
    return EpisodeMetrics(
        hazard_onset_s=float(onset_s) if math.isfinite(onset_s) else nan,
        reaction_time_s=react.total_s if react else nan,
        reaction_wait_s=react.wait_s if react else nan,
        reaction_notice_s=react.notice_s if react else nan,
        reaction_compute_s=react.compute_s if react else nan,
        reaction_kind=react.kind if react else "",
        brake_onset_s=onset_brake.total_s if onset_brake else nan,
        critical=bool(criticality.get("critical", False)),
        **{name: float(criticality.get(name, nan)) for name in CRITICALITY_KEYS[1:]},
        collided=any(s.crashed for s in substeps),
        offroad=any(not s.on_road for s in substeps),
        route_exit_reached=any(s.on_route_exit for s in substeps),
        min_ttc_s=_finite_min(ttcs),
        min_gap_m=_finite_min(gaps),
        peak_decel_mps2=float(max(0.0, -acceleration.min())) if acceleration.size else 0.0,
        progress_m=float(sum(s.distance_m for s in substeps)),
        mean_speed_mps=float(speeds[1:].mean()) if substeps else nan,
        traffic_mean_speed_mps=float(np.nanmean(traffic)) if np.isfinite(traffic).any() else nan,
        mean_abs_jerk_mps3=float(np.abs(jerk).mean()) if jerk.size else 0.0,
        latency_p50_s=float(np.percentile(latencies, 50)) if latencies.size else nan,
        latency_p99_s=float(np.percentile(latencies, 99)) if latencies.size else nan,
        overrun_rate=float(np.mean(overruns)) if overruns else nan,
        decision_age_s=age_s,
        decision_rate_hz=rate_hz,
        dropped_frames=sum(1 for r in records if not r.observed),
        ticks=len(records),
        duration_s=end_s,
    )
