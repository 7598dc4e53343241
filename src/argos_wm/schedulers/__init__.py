from .scheduling_shortcut_forcing import DenoisingSteps, ShortcutForcingScheduler, ShortcutForcingSchedulerOutput

__all__ = ["DenoisingSteps", "ShortcutForcingScheduler", "ShortcutForcingSchedulerOutput"]
