"""Route frame: analytic cases on straight lines and circles."""

import numpy as np
import pytest
from reflexdrive.agents.staged.route_frame import (
    curve_speed_limit,
    project_to_route,
    route_arc_length,
    route_curvature,
    route_point,
)

STEP = 2.0


def circle(radius: float, points: int = 40, left: bool = True) -> np.ndarray:
    """`(1, P, 2)` a circle of `radius` through the origin tangent to +x, sampled every
    STEP of arc; centre at (0, +R) turning left, (0, -R) turning right."""
    angle = np.arange(points) * STEP / radius
    sign = 1.0 if left else -1.0
    return np.stack([radius * np.sin(angle), sign * radius * (1.0 - np.cos(angle))], -1)[None]


def chord_error(radius: float) -> float:
    return radius * (1.0 - np.cos(STEP / (2.0 * radius))) + 1e-9


def test_straight_route_is_the_shifted_ego_frame():
    route = np.stack([np.arange(10) * STEP + 1.0, np.full(10, -0.5)], -1)[None]
    points = np.array([[[5.0, 1.0], [-7.0, 2.0], [30.0, -3.0]]])
    s, d = project_to_route(route, points)
    np.testing.assert_allclose(s, [[4.0, -8.0, 29.0]], atol=1e-12)
    np.testing.assert_allclose(d, [[1.5, 2.5, -2.5]], atol=1e-12)
    back, heading = route_point(route, s, d)
    np.testing.assert_allclose(back, points, atol=1e-12)
    np.testing.assert_allclose(heading, 0.0, atol=1e-12)
    np.testing.assert_allclose(route_curvature(route), 0.0, atol=1e-12)


@pytest.mark.parametrize("left", [True, False])
def test_circle_offset_and_arc_length(left):
    radius = 25.0
    route = circle(radius, left=left)
    sign = 1.0 if left else -1.0
    centre = np.array([0.0, sign * radius])
    angle = np.array([0.3, 0.9, 1.5])
    distance = np.array([radius - 3.0, radius + 2.0, radius])
    points = centre + distance[:, None] * np.stack(
        [np.sin(angle), -sign * np.cos(angle)], -1)
    s, d = project_to_route(route, points[None])
    # left turn: the centre side is +d, so d = R - distance; right turn: d = distance - R
    expected_d = sign * (radius - distance)
    tolerance = chord_error(radius) * 1.5
    np.testing.assert_allclose(d[0], expected_d, atol=tolerance)
    # the polyline is shorter than the arc by a relative (step / R)^2 / 24, and a point off
    # the line projects on a chord up to |d| * step / 2R away from its radial foot
    bound = (np.abs(expected_d) * STEP / (2 * radius)
             + radius * angle * (STEP / radius) ** 2 / 24 + 1e-9)
    assert np.all(np.abs(s[0] - radius * angle) <= bound)
    back, heading = route_point(route, s, d)
    np.testing.assert_allclose(back[0], points, atol=tolerance * 2)
    # the segment's direction is the tangent half a step back or ahead
    np.testing.assert_allclose(heading[0], sign * angle, atol=STEP / radius)


def test_circle_curvature_and_arc_length():
    radius = 30.0
    route = circle(radius, left=False)
    kappa = route_curvature(route)
    np.testing.assert_allclose(kappa[0, 1:-1], -1.0 / radius, rtol=1e-3)
    assert kappa[0, 0] == kappa[0, -1] == 0.0
    arc = route_arc_length(route)
    chord = 2.0 * radius * np.sin(STEP / (2.0 * radius))
    np.testing.assert_allclose(arc[0], np.arange(40) * chord, rtol=1e-12)


def test_points_behind_and_past_the_end_extend_the_end_segments():
    route = circle(20.0, points=10)
    first = (route[0, 1] - route[0, 0]) / np.linalg.norm(route[0, 1] - route[0, 0])
    behind = route[0, 0] - 6.0 * first + 1.5 * np.array([-first[1], first[0]])
    s, d = project_to_route(route, behind[None, None])
    np.testing.assert_allclose([s[0, 0], d[0, 0]], [-6.0, 1.5], atol=1e-9)
    last = route[0, -1] - route[0, -2]
    end = route[0, -1] + 5.0 * last / np.linalg.norm(last)
    s, d = project_to_route(route, end[None, None])
    np.testing.assert_allclose(s[0, 0], route_arc_length(route)[0, -1] + 5.0, atol=1e-9)
    np.testing.assert_allclose(d[0, 0], 0.0, atol=1e-9)


def test_nan_rows_and_missing_routes():
    route = np.full((2, 6, 2), np.nan)
    route[0, :3] = [[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]
    points = np.array([[[10.0, 1.0]], [[3.0, -2.0]]])
    s, d = project_to_route(route, points)
    np.testing.assert_allclose(s[:, 0], [10.0, 3.0])
    np.testing.assert_allclose(d[:, 0], [1.0, -2.0])
    assert np.isnan(route_arc_length(route)[0, 3])
    back, _ = route_point(route, s, d)
    np.testing.assert_allclose(back, points)


def test_curve_speed_limit_brakes_ahead_of_a_bend():
    straight = np.stack([np.arange(40) * STEP, np.zeros(40)], -1)
    bend = straight.copy()
    # a circle of radius 20 from 40 m ahead
    arc = circle(20.0, points=20)[0]
    bend[20:] = bend[20] + arc
    routes = np.stack([straight, bend])
    limit = curve_speed_limit(routes, max_lateral_accel_mps2=2.0, decel_mps2=2.0,
                              max_speed_mps=30.0)
    assert limit[0] == 30.0
    # the first point with the full curvature 1/R is the second of the circle (the
    # junction turns by half a step's angle): the corner speed sqrt(a R) plus 2 b s there
    s_first = route_arc_length(routes[1:])[0, 21]
    np.testing.assert_allclose(limit[1], np.sqrt(2.0 * 20.0 + 2.0 * 2.0 * s_first), rtol=1e-3)
