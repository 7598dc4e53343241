from .losses import DiffusionForcingLoss, ForcingLossOutput, ShortcutForcingLoss

__all__ = ["DiffusionForcingLoss", "ForcingLossOutput", "ShortcutForcingLoss"]
