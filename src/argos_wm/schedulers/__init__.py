from .scheduling_shortcut_forcing import ShortcutForcingScheduler, ShortcutForcingSchedulerOutput

__all__ = ["ShortcutForcingScheduler", "ShortcutForcingSchedulerOutput"]
