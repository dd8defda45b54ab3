"""Models of neural population activity: LangevinFlow and its pieces."""

from nlbkit.models.config import LangevinConfig
from nlbkit.models.langevin import LangevinFlow, LangevinOutput

__all__ = ["LangevinConfig", "LangevinFlow", "LangevinOutput"]
