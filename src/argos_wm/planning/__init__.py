from .cem import CEMPlanner
from .costs import GoalCost
from .gradient import GradientPlanner
from .mpc import MPCOutput, mpc
from .mppi import MPPIPlanner
from .sampling_planner import SamplingPlanner

__all__ = ["CEMPlanner", "GoalCost", "GradientPlanner", "MPCOutput", "MPPIPlanner", "SamplingPlanner", "mpc"]
