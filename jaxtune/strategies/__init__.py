"""Search strategies: decisions at record points, one file each."""

from jaxtune.strategies.base import (
    CONTINUE as CONTINUE,
)
from jaxtune.strategies.base import (
    Decision as Decision,
)
from jaxtune.strategies.base import (
    Report as Report,
)
from jaxtune.strategies.base import (
    Search as Search,
)
from jaxtune.strategies.base import (
    Strategy as Strategy,
)
from jaxtune.strategies.halving import (
    Hyperband as Hyperband,
)
from jaxtune.strategies.halving import (
    SuccessiveHalving as SuccessiveHalving,
)
from jaxtune.strategies.hypergradient import HyperGradient as HyperGradient
from jaxtune.strategies.median import MedianStopping as MedianStopping
from jaxtune.strategies.pbt import PBT as PBT
from jaxtune.strategies.plateau import PlateauDecay as PlateauDecay
