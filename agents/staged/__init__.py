"""The staged stack: perception -> tracking -> planning -> control."""

from reflexdrive.agents.staged.car_following import IDMParams, idm_acceleration
from reflexdrive.agents.staged.control import (
                                   CONTROLLERS,
                                   Controller,
                                   LaneKeepingController,
                                   PIDSpeedController,
                                   PurePursuitController,
                                   StanleyController,
                                   make_controller,
)
from reflexdrive.agents.staged.perception import OraclePerception
from reflexdrive.agents.staged.planner_config import PlannerConfig
from reflexdrive.agents.staged.planning import MobilFrenetPlanner
from reflexdrive.agents.staged.stack import StagedAgent
from reflexdrive.agents.staged.tracking import IdentityTracker, KalmanTracker, KalmanTrackerConfig

__all__ = ["CONTROLLERS", "Controller", "IDMParams", "IdentityTracker", "KalmanTracker",
           "KalmanTrackerConfig", "LaneKeepingController", "MobilFrenetPlanner",
           "OraclePerception", "PIDSpeedController", "PlannerConfig", "PurePursuitController",
           "StagedAgent", "StanleyController", "idm_acceleration", "make_controller"]
