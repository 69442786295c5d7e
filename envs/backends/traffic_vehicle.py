"""The traffic's vehicle class on both backends: highway-env's `IDMVehicle` that does not
drive backwards.

highway-env lets a vehicle's speed fall to `Vehicle.MIN_SPEED` (-40 m/s), and its IDM does
not stop there: behind a leader closer than the jam distance `d0` at standstill the
interaction term still brakes, so the vehicle reverses, and its own desired gap
`d0 + v T + v dv / (2 sqrt(a b))` keeps braking it as it goes (a known IDM artefact; IDM
describes forward traffic only). On the roundabout traffic reversed at up to 15 m/s
against the ring's direction into the ego. `MIN_SPEED = 0` is highway-env's own bound,
applied in `Vehicle.clip_actions` (a vehicle below it accelerates by at least the
shortfall), so a stopped vehicle stays stopped. The batched kernels read the same bound
(`Params.min_speed`); the ego never reverses either (its brakes stop it at standstill).
"""

from __future__ import annotations

from highway_env.vehicle.behavior import IDMVehicle


class TrafficVehicle(IDMVehicle):
    """highway-env's IDM + MOBIL vehicle with its speed bounded below by 0 [m/s]."""

    MIN_SPEED = 0.0
