"""Tracking stages: `Detections` over time to `Tracks`.

Two trackers share the contract `tracker(detections, ego, time_s, road_map=None) -> Tracks`
with `reset(done)`; `road_map` is `info["map"]` (`envs.road_map`) where the env gives one:
through turns its route tells the ego's yaw (`agents.staged.ego_motion`).

- `IdentityTracker` passes ground truth through (oracle perception carries ids and exact
  velocities) and differences each object's velocity between calls for its acceleration.
- `KalmanTracker` is a multi-object tracker for any perception: a constant-acceleration
  Kalman filter per track (white jerk, plus white acceleration on the velocity) with
  ego-motion compensation, Hungarian association with a gate, and tentative / confirmed /
  dead track management, batched over `N` envs.

Frames (see `envs.sensors`): positions are in the *current* ego frame (x forward along
the ego heading, y towards the ego's +heading side); velocities are *ground* velocities
expressed in the ego axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reflexdrive.agents.staged.ego_motion import ego_motion
from reflexdrive.agents.staged.route_frame import ROUTE_KEYS, absent_as_nan
from reflexdrive.agents.staged.types import Detections, Tracks
from reflexdrive.envs.config import EGO_FEATURES

from reflexdrive.common.validation import integer, number_tuple, real, validate_fields

SPEED = EGO_FEATURES.index("speed_mps")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")

_GATED = 1e9
"""Cost of a gated (forbidden) track-detection pair in the assignment matrix; far above
any admissible cost, so the assignment never pays it when it can avoid it."""


class IdentityTracker:
    """Passes detections that already carry ids and velocities (oracle perception) through.

    The tracker for ground truth: ids are the simulator's vehicle ids, velocities exact.
    Acceleration: the backward difference of an object's ground velocity between this call
    and the previous one, `(v_now - R v_before) / dt`, with `R` turning the previous ego
    axes into the current ones (the ego's yaw change as `KalmanTracker` takes it,
    `agents.staged.ego_motion`); NaN for an object not seen (or without a finite velocity) in
    the previous call, on an env's first call after `reset`, or when `ego` / `time_s` are
    not given. With exact velocities and a target braking since before the previous call
    it is exact; a target that started braking during the last interval shows the mean
    over it.
    """

    name = "identity"

    def __init__(self) -> None:
        self._id: np.ndarray | None = None          # (N, M) ids seen last call, -1: none
        self._velocity: np.ndarray | None = None    # (N, M, 2) their velocities [m/s]
        self._time = np.zeros(0)                    # (N,) [s], NaN: no previous call
        self._motion = _EgoMotionMemory()

    def reset(self, done) -> None:
        """Forget the previous velocities of the envs where `done` `(N,)` is True."""
        if self._id is not None:
            self._time[np.asarray(done, bool)] = np.nan

    def __call__(self, detections: Detections, ego=None, time_s=None, road_map=None) -> Tracks:
        acceleration = np.full(np.shape(detections.velocity), np.nan)
        if ego is not None and time_s is not None:
            acceleration = self._difference(detections, np.asarray(ego, np.float64),
                                            np.asarray(time_s, np.float64), road_map)
        return Tracks(position=detections.position, velocity=detections.velocity,
                      size=detections.size, track_id=detections.object_id,
                      valid=detections.valid, heading=detections.heading,
                      acceleration=acceleration)

    def _difference(self, detections: Detections, ego: np.ndarray, time_s: np.ndarray,
                    road_map=None) -> np.ndarray:
        """`(N, M, 2)` backward-difference accelerations; remembers this call."""
        road_map = absent_as_nan(road_map, ROUTE_KEYS)
        ids = np.where(detections.valid, detections.object_id, -1)
        velocity = np.asarray(detections.velocity, np.float64)
        n = ids.shape[0]
        time_s = np.broadcast_to(time_s, (n,))
        acceleration = np.full(velocity.shape, np.nan)
        elapsed = (np.nan_to_num(time_s - self._time) if self._time.shape == (n,)
                   else np.zeros(n))
        turn, _ = self._motion.step(ego[:, HEADING_ERROR], ego[:, SPEED] * elapsed, road_map)
        if self._id is not None and self._id.shape[0] == n:
            dt = time_s - self._time                                          # NaN: first
            before = _rotate_pairs(self._velocity, np.cos(turn)[:, None], np.sin(-turn)[:, None],
                                   -1)                                        # (N, M', 2)
            same = (ids[:, :, None] == self._id[:, None, :]) & (ids[:, :, None] >= 0)
            seen = same.any(-1) & (dt > 0)[:, None]
            previous = np.take_along_axis(before, same.argmax(-1)[..., None], 1)
            with np.errstate(invalid="ignore"):
                acceleration = np.where(seen[..., None],
                                        (velocity - previous) / dt[:, None, None], np.nan)
        self._id, self._velocity = ids.copy(), velocity.copy()
        self._time = time_s.copy()
        return acceleration


class _EgoMotionMemory:
    """What the trackers remember of the previous call to tell the ego's motion since:
    heading error `(N,)` and the map's route `(N, P, 2)` and route heading `(N, P)` (None
    without a map)."""

    def __init__(self) -> None:
        self.heading_error: np.ndarray | None = None
        self.route: np.ndarray | None = None
        self.route_heading: np.ndarray | None = None

    def step(self, heading_error: np.ndarray, distance: np.ndarray, road_map
             ) -> tuple[np.ndarray, np.ndarray]:
        """`(yaw_change, travel_angle)` `(N,)` [rad] since the previous call (0 on the
        first), then remember this call."""
        route = heading = None
        if road_map is not None:
            route = np.asarray(road_map["route"], np.float64)
            heading = np.asarray(road_map["route_heading"], np.float64)
        previous = self.heading_error
        if previous is None or previous.shape != heading_error.shape:
            previous = heading_error
        usable = (route is not None and self.route is not None
                  and self.route.shape == route.shape)
        yaw, angle = ego_motion(previous, heading_error, distance,
                                self.route if usable else None,
                                self.route_heading if usable else None, heading)
        self.heading_error, self.route, self.route_heading = heading_error.copy(), route, heading
        return yaw, angle


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class KalmanTrackerConfig:
    """Settings of `KalmanTracker`, validated on construction (`ConfigError` naming the
    field as `tracker.<field>` and its allowed range; units in each field's help)."""

    max_tracks: int = integer(
        32, low=1, high=1024,
        help="capacity K of tracks per env (tentative ones included) [count]")
    min_hits: int = integer(
        2, low=1, high=100,
        help="associated frames (the birth frame included) before a track is confirmed and "
             "reported; 1 confirms a track on its first frame [count]")
    max_misses: int = integer(
        3, low=1, high=100,
        help="consecutive frames without a detection after which a track dies [count]")
    gate_m: float = real(
        5.0, low=0.0, high=100.0, low_inclusive=False,
        help="largest distance between a track's predicted position and a detection for "
             "them to be associated [m]")
    accel_noise_mps2: float = real(
        2.0, low=0.0, high=100.0,
        help="std (spectral density sqrt) of the white acceleration added to the velocity "
             "(process noise of the velocity) [m/s^2]")
    jerk_noise_mps3: float = real(
        3.0, low=0.0, high=1000.0,
        help="std (spectral density sqrt) of the white jerk driving the acceleration state "
             "(process noise of the acceleration; with 0 and initial_accel_std_mps2 0 the "
             "filter is constant-velocity) [m/s^3]")
    position_noise_m: float = real(
        0.3, low=0.0, high=100.0, low_inclusive=False,
        help="std of a detection's position error, per axis [m]")
    velocity_noise_mps: float = real(
        0.5, low=0.0, high=100.0, low_inclusive=False,
        help="std of a measured velocity's error, per axis [m/s]")
    initial_velocity_std_mps: float = real(
        10.0, low=0.0, high=1000.0, low_inclusive=False,
        help="std of a new track's velocity, per axis, when its detection carries no "
             "velocity (it starts at the ego's velocity) [m/s]")
    initial_accel_std_mps2: float = real(
        3.0, low=0.0, high=100.0,
        help="std of a new track's acceleration, per axis (it starts at 0) [m/s^2]")
    size_smoothing: float = real(
        0.3, low=0.0, high=1.0, low_inclusive=False,
        help="weight of a new detection in the exponential smoothing of a track's size (1 "
             "takes the latest detection's size) [-]")
    default_size_m: tuple[float, float] = number_tuple(
        (5.0, 2.0), low=0.0, high=100.0, low_inclusive=False, min_length=2, max_length=2,
        help="(length, width) of a track whose detections carry no size [m]")

    def __post_init__(self) -> None:
        validate_fields(self, "tracker.")


# ----------------------------------------------------------------------------- batched math


def _rotate_pairs(values: np.ndarray, cos: np.ndarray, sin: np.ndarray, axis: int
                  ) -> np.ndarray:
    """Rotate the `(0, 1)`, `(2, 3)`, ... entries of `values` along `axis` (-1 or -2, of even
    length) by the angle whose cosine and sine are `cos`, `sin` (broadcast against the other
    axes)."""
    v = np.moveaxis(values, axis, -1)
    x, y = v[..., 0::2], v[..., 1::2]                                     # (..., D/2) each
    out = np.empty_like(v)
    out[..., 0::2] = cos[..., None] * x - sin[..., None] * y
    out[..., 1::2] = sin[..., None] * x + cos[..., None] * y
    return np.moveaxis(out, -1, axis)


STATE_SIZE = 6
"""Kalman state `(x, y, vx, vy, ax, ay)` [m, m, m/s, m/s, m/s^2, m/s^2]."""


def predict_constant_acceleration(state: np.ndarray, covariance: np.ndarray, dt: np.ndarray,
                                  ego_speed: np.ndarray, ego_yaw_change: np.ndarray,
                                  accel_noise: float, jerk_noise: float,
                                  ego_travel_angle: np.ndarray | None = None
                                  ) -> tuple[np.ndarray, np.ndarray]:
    """Kalman prediction of constant-acceleration tracks seen from a moving ego, batched.

    State `(x, y, vx, vy, ax, ay)`: position in the ego frame, ground velocity and ground
    acceleration in ego axes. Per axis `F = [[1, dt, dt^2/2], [0, 1, dt], [0, 0, 1]]`. Over
    `dt` the ego advances `ego_speed * dt` along its (old) heading and then yaws by
    `ego_yaw_change`, so, in the old frame, the relative position moves by
    `(v_obj - (ego_speed, 0)) dt + a_obj dt^2 / 2`, and the result (position, velocity,
    acceleration) is rotated by `-ego_yaw_change` into the new frame. This ignores the ego's
    slip angle and the rotation during the interval (the ego is taken to travel straight,
    then turn): on straight roads both are small (`heading_error` stays within a few
    degrees). Through a turn, `ego_travel_angle` gives the direction of the ego's
    displacement relative to its old heading (on a circular arc: half the yaw change), and
    the ego moves by `ego_speed * dt * (cos, sin)(ego_travel_angle)` instead.

    Process noise per axis, added before the rotation: white acceleration of spectral
    density `accel_noise^2` on the velocity, `qa [[dt^3/3, dt^2/2, 0], [dt^2/2, dt, 0],
    [0, 0, 0]]`, plus white jerk of density `jerk_noise^2` driving the acceleration,
    `qj [[dt^5/20, dt^4/8, dt^3/6], [dt^4/8, dt^3/3, dt^2/2], [dt^3/6, dt^2/2, dt]]`.
    With `jerk_noise = 0` and a zero acceleration of zero variance this is exactly the
    constant-velocity filter.

    Args:
        state: `(..., 6)` [m, m, m/s, m/s, m/s^2, m/s^2].
        covariance: `(..., 6, 6)`.
        dt: `(...)` prediction interval [s] (0 leaves a track unchanged).
        ego_speed: `(...)` ego speed along its heading over the interval [m/s].
        ego_yaw_change: `(...)` ego heading change over the interval [rad], + towards +y.
        accel_noise: std of the white acceleration on the velocity [m/s^2].
        jerk_noise: std of the white jerk on the acceleration [m/s^3].
        ego_travel_angle: `(...)` direction of the ego's displacement relative to its old
            heading [rad]; None: straight ahead (0).

    Returns:
        The predicted `(state, covariance)`, same shapes.
    """
    dt = np.asarray(dt, np.float64)
    half_dt2 = 0.5 * dt * dt
    moved = state.copy()
    moved[..., 0:2] += dt[..., None] * state[..., 2:4] + half_dt2[..., None] * state[..., 4:6]
    moved[..., 2:4] += dt[..., None] * state[..., 4:6]
    if ego_travel_angle is None:
        moved[..., 0] -= ego_speed * dt
    else:
        moved[..., 0] -= ego_speed * dt * np.cos(ego_travel_angle)
        moved[..., 1] -= ego_speed * dt * np.sin(ego_travel_angle)
    transition = np.broadcast_to(np.eye(STATE_SIZE), (*dt.shape, STATE_SIZE, STATE_SIZE)).copy()
    for axis in (0, 1):
        transition[..., axis, axis + 2] = dt
        transition[..., axis + 2, axis + 4] = dt
        transition[..., axis, axis + 4] = half_dt2
    spread = transition @ covariance @ np.swapaxes(transition, -1, -2)
    qa, qj = accel_noise ** 2, jerk_noise ** 2
    noise = {(0, 0): qa * dt ** 3 / 3.0 + qj * dt ** 5 / 20.0,
             (0, 1): qa * dt ** 2 / 2.0 + qj * dt ** 4 / 8.0,
             (1, 1): qa * dt + qj * dt ** 3 / 3.0,
             (0, 2): qj * dt ** 3 / 6.0, (1, 2): qj * dt ** 2 / 2.0, (2, 2): qj * dt}
    for axis in (0, 1):
        for (i, j), q in noise.items():
            spread[..., axis + 2 * i, axis + 2 * j] += q
            if i != j:
                spread[..., axis + 2 * j, axis + 2 * i] += q
    cos, sin = np.cos(ego_yaw_change), np.sin(-ego_yaw_change)
    state = _rotate_pairs(moved, cos, sin, -1)
    covariance = _rotate_pairs(_rotate_pairs(spread, cos[..., None], sin[..., None], -2),
                               cos[..., None], sin[..., None], -1)
    return state, 0.5 * (covariance + np.swapaxes(covariance, -1, -2))


def update_kalman(state: np.ndarray, covariance: np.ndarray, position: np.ndarray,
                  velocity: np.ndarray, position_noise: float, velocity_noise: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update with a position and, where finite, a velocity measurement, batched.

    A non-finite velocity measurement is left out exactly: its rows of the measurement
    matrix are zero (and its noise a placeholder 1), so its gain columns vanish; so are the
    rows of state entries past the velocity (the acceleration is never measured). The
    covariance update is Joseph's form (stays symmetric positive definite).

    Args:
        state: `(B, D)` with `D >= 4`, `(x, y, vx, vy, ...)`; covariance: `(B, D, D)`.
        position: `(B, 2)` measured position [m].
        velocity: `(B, 2)` measured ground velocity [m/s], NaN where unknown.
        position_noise, velocity_noise: measurement stds per axis [m], [m/s].

    Returns:
        The updated `(state, covariance)`.
    """
    size = state.shape[-1]
    unmeasured = np.zeros((*position.shape[:-1], size - 4), bool)
    measured = np.concatenate([np.ones(position.shape, bool), np.isfinite(velocity),
                               unmeasured], -1)
    h = measured.astype(np.float64)                                       # (B, D) diag of H
    z = np.concatenate([position, np.where(np.isfinite(velocity), velocity, 0.0),
                        np.zeros(unmeasured.shape)], -1)
    variance = np.where(measured, np.array([position_noise ** 2] * 2 + [velocity_noise ** 2] * 2
                                           + [1.0] * (size - 4)), 1.0)
    noise = variance[..., :, None] * np.eye(size)                         # R, (B, D, D)
    innovation = h * (z - state)
    ph = covariance * h[..., None, :]                                     # P H^T
    innovation_cov = h[..., :, None] * ph + noise                         # H P H^T + R
    gain = np.linalg.solve(innovation_cov, np.swapaxes(ph, -1, -2))       # S^-1 H P
    gain = np.swapaxes(gain, -1, -2)                                      # K = P H^T S^-1
    state = state + np.einsum("...ij,...j->...i", gain, innovation)
    keep = np.eye(size) - gain * h[..., None, :]                          # I - K H
    covariance = (keep @ covariance @ np.swapaxes(keep, -1, -2)
                  + gain @ noise @ np.swapaxes(gain, -1, -2))
    return state, 0.5 * (covariance + np.swapaxes(covariance, -1, -2))


def association_cost(track_position: np.ndarray, track_position_cov: np.ndarray,
                     detection_position: np.ndarray, position_noise: float,
                     gate_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Track-to-detection costs and gates, batched.

    The cost is the negative log-likelihood of the detection under the track's predicted
    position (up to a constant): `d^T S^-1 d + ln det S` with `d` the innovation and
    `S = P_pos + R`; the `ln det S` term keeps uncertain tracks from attracting every
    detection. A pair is admissible when `|d| <= gate_m` (Euclidean, in metres).

    Args:
        track_position: `(N, K, 2)` predicted positions [m].
        track_position_cov: `(N, K, 2, 2)` their covariances [m^2].
        detection_position: `(N, M, 2)` [m].
        position_noise: detection position std per axis [m].
        gate_m: association gate [m].

    Returns:
        cost `(N, K, M)` and admissible `(N, K, M)` bool.
    """
    diff = detection_position[:, None, :, :] - track_position[:, :, None, :]    # (N, K, M, 2)
    s = track_position_cov + position_noise ** 2 * np.eye(2)                   # (N, K, 2, 2)
    sxx, sxy, syy = s[..., 0, 0, None], s[..., 0, 1, None], s[..., 1, 1, None]
    det = sxx * syy - sxy * sxy                                                # (N, K, 1)
    dx, dy = diff[..., 0], diff[..., 1]
    mahalanobis = (syy * dx * dx - 2.0 * sxy * dx * dy + sxx * dy * dy) / det
    cost = mahalanobis + np.log(det)
    admissible = dx * dx + dy * dy <= gate_m ** 2
    return np.where(admissible, cost, _GATED), admissible


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Wrap angles [rad] to (-pi, pi]."""
    return np.pi - (np.pi - angle) % (2.0 * np.pi)


# ----------------------------------------------------------------------------- tracker


class KalmanTracker:
    """Multi-object tracker: constant-acceleration Kalman filters, Hungarian association,
    track management; batched over `N` envs, `K = config.max_tracks` slots per env.

    Each call, per env:

    1. **Predict** every track over `dt = time_s - previous time_s` (variable: an agent
       under latency skips ticks), compensating the ego's own motion with its speed (the
       mean of the previous and current `speed_mps`) and its yaw change: the change of
       `heading_error_rad` on a straight road, the map's route heading through turns
       (`agents.staged.ego_motion`, where `road_map` is given); see
       `predict_constant_acceleration` for the model and the approximation. The first
       call after a reset predicts nothing; time running backwards (an episode restarted
       without `reset`) restarts that env's tracks.
    2. **Associate** tracks and valid detections with the Hungarian algorithm
       (`scipy.optimize.linear_sum_assignment`) on `association_cost`, pairs farther than
       `gate_m` apart excluded.
    3. **Update** matched tracks with the detection's position and, where finite, its
       velocity (oracle perception measures exact velocities; NaN means unknown). Size:
       exponentially smoothed from the detections' (`size_smoothing`); heading: the latest
       finite detection's, turned with the ego's yaw in between.
    4. **Manage**: a matched track's `hits` grows and its `misses` resets; an unmatched one
       coasts on its prediction and dies after `max_misses` consecutive misses. Each
       unmatched detection, nearest to the ego first, starts a tentative track (velocity
       as measured, else the ego's velocity with `initial_velocity_std_mps`; acceleration
       0 with `initial_accel_std_mps2`), confirmed
       once it has `min_hits` associated frames. When all `K` slots are taken, a birth
       replaces the stalest track missed this frame (most consecutive misses, then fewest
       hits, then oldest id); tracks matched this frame are never dropped, so a birth
       with no such track to replace is discarded.

    Ids count up from 0 per env and are never reused within an episode (`reset` restarts
    the count). The output holds confirmed tracks only (`valid`); other slots have id -1
    and zeros.
    """

    name = "kalman"

    def __init__(self, config: KalmanTrackerConfig | None = None):
        self.config = KalmanTrackerConfig() if config is None else config
        self._n: int | None = None

    # -- state ------------------------------------------------------------------------

    def _allocate(self, n: int) -> None:
        k = self.config.max_tracks
        self._n = n
        self._state = np.zeros((n, k, STATE_SIZE))
        self._cov = np.broadcast_to(np.eye(STATE_SIZE), (n, k, STATE_SIZE, STATE_SIZE)).copy()
        self._size = np.zeros((n, k, 2))
        self._heading = np.full((n, k), np.nan)
        self._alive = np.zeros((n, k), bool)
        self._confirmed = np.zeros((n, k), bool)
        self._hits = np.zeros((n, k), np.int64)
        self._misses = np.zeros((n, k), np.int64)
        self._age_s = np.zeros((n, k))
        self._id = np.full((n, k), -1, np.int64)
        self._next_id = np.zeros(n, np.int64)
        self._time = np.full(n, np.nan)
        self._speed = np.zeros(n)
        self._motion = _EgoMotionMemory()

    def reset(self, done) -> None:
        """Forget the tracks (and restart the ids) of the envs where `done` `(N,)` is True."""
        if self._n is None:
            return
        done = np.asarray(done, bool)
        if done.shape != (self._n,):
            raise ValueError(f"done has shape {done.shape}, expected ({self._n},)")
        self._alive[done] = False
        self._confirmed[done] = False
        self._hits[done] = 0
        self._misses[done] = 0
        self._id[done] = -1
        self._next_id[done] = 0
        self._time[done] = np.nan

    # -- one call ---------------------------------------------------------------------

    def __call__(self, detections: Detections, ego: np.ndarray, time_s: np.ndarray,
                 road_map=None) -> Tracks:
        """Track `detections` (`(N, M, ...)`) observed at `time_s` `(N,)` [s] by an ego with
        state `ego` `(N, len(EGO_FEATURES))`, given the map `road_map` (`info["map"]`, or
        None); returns the confirmed `Tracks` `(N, K, ...)`."""
        cfg = self.config
        road_map = absent_as_nan(road_map, ROUTE_KEYS)
        valid = np.asarray(detections.valid, bool)
        n = valid.shape[0]
        if self._n is None:
            self._allocate(n)
        elif n != self._n:
            raise ValueError(f"batch of {n} envs, the tracker holds {self._n}; build a new one")
        ego = np.asarray(ego, np.float64)
        time_s = np.broadcast_to(np.asarray(time_s, np.float64), (n,))
        speed, yaw = ego[:, SPEED], ego[:, HEADING_ERROR]

        backwards = time_s < self._time
        if backwards.any():
            self.reset(backwards)
        first = np.isnan(self._time)
        dt = np.where(first, 0.0, time_s - self._time)
        mean_speed = 0.5 * (speed + np.where(first, speed, self._speed))
        yaw_change, travel_angle = self._motion.step(yaw, mean_speed * dt, road_map)
        yaw_change = np.where(first, 0.0, yaw_change)
        travel_angle = np.where(first, 0.0, travel_angle)
        self._time, self._speed = time_s.copy(), speed.copy()

        k = cfg.max_tracks
        self._state, self._cov = predict_constant_acceleration(
            self._state, self._cov, np.repeat(dt[:, None], k, 1),
            np.repeat(mean_speed[:, None], k, 1), np.repeat(yaw_change[:, None], k, 1),
            cfg.accel_noise_mps2, cfg.jerk_noise_mps3, np.repeat(travel_angle[:, None], k, 1))
        self._heading = _wrap(self._heading - yaw_change[:, None])
        self._age_s = self._age_s + dt[:, None]

        position = np.asarray(detections.position, np.float64)
        velocity = np.asarray(detections.velocity, np.float64)
        valid = valid & np.isfinite(position).all(-1)
        cost, admissible = association_cost(self._state[..., :2], self._cov[..., :2, :2],
                                            np.nan_to_num(position), cfg.position_noise_m,
                                            cfg.gate_m)
        matches = [self._associate(cost[i], admissible[i], self._alive[i], valid[i])
                   for i in range(n)]
        env = np.concatenate([np.full(len(t), i) for i, (t, _) in enumerate(matches)]).astype(int)
        track = np.concatenate([t for t, _ in matches]).astype(int)
        detection = np.concatenate([d for _, d in matches]).astype(int)

        matched = np.zeros((n, k), bool)
        matched[env, track] = True
        if len(env):
            self._update(env, track, detection, position, velocity, detections)

        missed = self._alive & ~matched
        self._misses[missed] += 1
        self._alive &= self._misses < cfg.max_misses
        self._births(matched, valid, position, velocity, detections, speed,
                     [d for _, d in matches])
        self._confirmed |= self._alive & (self._hits >= cfg.min_hits)
        return self._tracks()

    def _associate(self, cost: np.ndarray, admissible: np.ndarray, alive: np.ndarray,
                   valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One env's matched `(track slots, detection indices)` (Hungarian, gated)."""
        # imported here: scipy.optimize takes seconds to import, only trackers need it
        from scipy.optimize import linear_sum_assignment
        tracks, dets = np.flatnonzero(alive), np.flatnonzero(valid)
        if len(tracks) == 0 or len(dets) == 0:
            return np.zeros(0, int), np.zeros(0, int)
        rows, cols = linear_sum_assignment(cost[np.ix_(tracks, dets)])
        keep = admissible[tracks[rows], dets[cols]]
        return tracks[rows[keep]], dets[cols[keep]]

    def _update(self, env, track, detection, position, velocity, detections) -> None:
        cfg = self.config
        state, cov = update_kalman(self._state[env, track], self._cov[env, track],
                                   position[env, detection], velocity[env, detection],
                                   cfg.position_noise_m, cfg.velocity_noise_mps)
        self._state[env, track], self._cov[env, track] = state, cov
        size = np.asarray(detections.size, np.float64)[env, detection]
        old = self._size[env, track]
        self._size[env, track] = np.where(np.isfinite(size),
                                          old + cfg.size_smoothing * (size - old), old)
        heading = np.asarray(detections.heading, np.float64)[env, detection]
        self._heading[env, track] = np.where(np.isfinite(heading), heading,
                                             self._heading[env, track])
        self._hits[env, track] += 1
        self._misses[env, track] = 0

    def _births(self, matched, valid, position, velocity, detections, ego_speed,
                matched_detections) -> None:
        """Start tentative tracks from the unmatched detections (see the class docstring)."""
        cfg = self.config
        env, slot, det = [], [], []
        for i in range(valid.shape[0]):
            unmatched = valid[i].copy()
            unmatched[matched_detections[i]] = False
            candidates = np.flatnonzero(unmatched)
            if len(candidates) == 0:
                continue
            candidates = candidates[np.argsort(np.hypot(*position[i, candidates].T),
                                               kind="stable")]
            free = list(np.flatnonzero(~self._alive[i]))
            stale = np.flatnonzero(self._alive[i] & ~matched[i])
            order = np.lexsort((self._id[i, stale], self._hits[i, stale],
                                -self._misses[i, stale]))
            slots = free + list(stale[order])
            for d, s in zip(candidates, slots):
                env.append(i), slot.append(s), det.append(d)
        if not env:
            return
        env, slot, det = np.array(env), np.array(slot), np.array(det)
        measured = velocity[env, det]
        known = np.isfinite(measured)
        ego_velocity = np.stack([ego_speed[env], np.zeros(len(env))], -1)
        self._state[env, slot] = np.concatenate(
            [position[env, det], np.where(known, measured, ego_velocity),
             np.zeros((len(env), 2))], -1)
        variance = np.concatenate([
            np.full((len(env), 2), cfg.position_noise_m ** 2),
            np.where(known, cfg.velocity_noise_mps ** 2, cfg.initial_velocity_std_mps ** 2),
            np.full((len(env), 2), cfg.initial_accel_std_mps2 ** 2)], -1)
        self._cov[env, slot] = variance[..., None] * np.eye(STATE_SIZE)
        size = np.asarray(detections.size, np.float64)[env, det]
        self._size[env, slot] = np.where(np.isfinite(size), size, np.array(cfg.default_size_m))
        self._heading[env, slot] = np.asarray(detections.heading, np.float64)[env, det]
        self._alive[env, slot] = True
        self._confirmed[env, slot] = False
        self._hits[env, slot] = 1
        self._misses[env, slot] = 0
        self._age_s[env, slot] = 0.0
        # ids in birth order within each env: consecutive from that env's counter
        first_of_env = np.r_[True, env[1:] != env[:-1]]
        start = np.flatnonzero(first_of_env)
        rank = np.arange(len(env)) - np.repeat(start, np.diff(np.r_[start, len(env)]))
        self._id[env, slot] = self._next_id[env] + rank
        np.add.at(self._next_id, env, 1)

    def _tracks(self) -> Tracks:
        out = self._confirmed & self._alive
        zero2 = np.zeros(2)
        variance = np.diagonal(self._cov, axis1=-2, axis2=-1)                # (N, K, 6)
        return Tracks(
            position=np.where(out[..., None], self._state[..., :2], zero2),
            velocity=np.where(out[..., None], self._state[..., 2:4], zero2),
            size=np.where(out[..., None], self._size, zero2),
            track_id=np.where(out, self._id, -1),
            valid=out.copy(),
            heading=np.where(out, self._heading, np.nan),
            hits=np.where(out, self._hits, 0),
            misses=np.where(out, self._misses, 0),
            age_s=np.where(out, self._age_s, 0.0),
            position_var=np.where(out[..., None], variance[..., 0:2], zero2),
            velocity_var=np.where(out[..., None], variance[..., 2:4], zero2),
            acceleration=np.where(out[..., None], self._state[..., 4:6], zero2),
            acceleration_var=np.where(out[..., None], variance[..., 4:6], zero2),
        )
