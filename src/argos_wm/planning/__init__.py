from .cem import CEMPlanner
from .costs import GoalCost
from .ensemble_planning import EnsemblePlanning
from .gradient import GradientPlanner
from .icem import ICEMPlanner
from .mpc import MPCOutput, mpc
from .mppi import MPPIPlanner
from .sampling_planner import SamplingPlanner
from .simulator_planning import SimulatorPlanning

__all__ = [
    "CEMPlanner",
    "EnsemblePlanning",
    "GoalCost",
    "GradientPlanner",
    "ICEMPlanner",
    "MPCOutput",
    "MPPIPlanner",
    "SamplingPlanner",
    "SimulatorPlanning",
    "mpc",
]
