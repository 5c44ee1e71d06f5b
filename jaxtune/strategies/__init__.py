"""Search strategies: decisions at record points, one file each."""

from jaxtune.strategies.base import (
    CONTINUE as CONTINUE,
    Decision as Decision,
    Report as Report,
    Strategy as Strategy,
)
from jaxtune.strategies.median import MedianStopping as MedianStopping
