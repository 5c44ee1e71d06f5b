"""The runner: trains a population in slices, records it, applies a strategy's decisions.

`loop.py` is the round (fill, train, record, decide, repack, checkpoint); `members.py`
the member table; `slices.py` the slots on the devices; `decisions.py` a `Decision`
checked and applied; `kept.py` the finished members' parameters; `recorder.py` the
curves; `configs.py` the sampler strategies ask; `checkpoint.py` the state on disk;
`ahead.py` compiles static groups in background threads ahead of need; `clock.py` splits
a round's time into training, compiling and the record point's own cost.
"""

from jaxtune.runner.checkpoint import Checkpointer as Checkpointer
from jaxtune.runner.configs import ConfigSource as ConfigSource
from jaxtune.runner.kept import KeptTrees as KeptTrees
from jaxtune.runner.loop import Runner as Runner
from jaxtune.runner.loop import SweepInterrupted as SweepInterrupted
from jaxtune.runner.members import MemberTable as MemberTable
from jaxtune.runner.recorder import Recorder as Recorder
from jaxtune.runner.slices import Groups as Groups
from jaxtune.runner.slices import Slices as Slices
