"""The staged stack: perception -> tracking -> planning -> control."""

from agents.staged.control import LaneKeepingController
from agents.staged.perception import OraclePerception
from agents.staged.planning import IDMParams, MobilFrenetPlanner, PlannerConfig, idm_acceleration
from agents.staged.stack import StagedAgent
from agents.staged.tracking import IdentityTracker

__all__ = ["IDMParams", "MobilFrenetPlanner", "PlannerConfig", "IdentityTracker", "LaneKeepingController",
           "OraclePerception", "StagedAgent", "idm_acceleration"]
