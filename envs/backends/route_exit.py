"""The route's exit: the road whose entry means the ego got through its scenario.

The ego's route is highway-env's (`ControlledVehicle.plan_route_to`, what
`envs.backends.highway_map` maps): its starting lane, then, with a destination
(`VehicleInit.destination`), the shortest path from that lane's end node to it. The
route's **exit road** is the last road of that path, the one ending at the destination:

- roundabout (destination `nxs`): `nx -> nxs`, the north exit lane leaving the ring;
- intersection (destination `o1`): `il1 -> o1`, the outgoing road after the left turn
  (intersection-cross-traffic, destination `o3`: `il3 -> o3`);
- the curve of stopped-vehicle-curve (destination `3`): `2 -> 3`, the straight after the arc.

Without a destination the route follows the road (`RoadNetwork.next_lane` without a route:
the closest continuation at each lane's end, what highway-env's vehicles do) to its dead
end, and the exit road is the last road before it:

- merge: `c -> d`, the highway after the merge section `b -> c` where the ramp's lane ends;
- a straight road: its only road `0 -> 1`, so the ego is on its exit from the start.

A route that never ends (a ring without a destination) has no exit road (None).

Both backends report whether the ego's lane (its closest lane, highway-env's
`lane_index`, the one its lane offset is measured on) lies on the exit road in
`WorldSnapshot.ego_on_route_exit`; an episode's `route_exit_reached` (`run.metrics`) is
that flag at any substep: the ego entered the exit road.
"""

from __future__ import annotations

from highway_env.road.road import RoadNetwork

LaneIndex = tuple[str, str, int]
Road = tuple[str, str]


def route_exit_road(network: RoadNetwork, lane: LaneIndex, destination: str | None
                    ) -> Road | None:
    """The exit road `(from, to)` of the route from `lane` (the ego's starting lane) to
    `destination` on `network` (module docstring); None where the route has no end.

    Raises:
        ValueError: `destination` cannot be reached from `lane`.
    """
    origin, end = lane[0], lane[1]
    if destination is not None:
        if end == destination:
            return origin, end
        path = network.shortest_path(end, destination)
        if len(path) < 2:
            raise ValueError(f"destination {destination!r} cannot be reached from lane "
                             f"{tuple(lane)!r}")
        return path[-2], path[-1]
    current, seen = tuple(lane), {(origin, end)}
    while True:
        geometry = network.get_lane(current)
        following = network.next_lane(current, route=None,
                                      position=geometry.position(geometry.length, 0.0))
        if following == current:                  # dead end: highway-env stays on it
            return current[0], current[1]
        road = (following[0], following[1])
        if road in seen:                          # round and round: no end
            return None
        seen.add(road)
        current = following
