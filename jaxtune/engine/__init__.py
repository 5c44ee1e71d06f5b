"""The engine: the layer below `sweep`, a population trained in one compiled program.

  * `state`: `PopulationState` and the tree helpers;
  * `contract`: what jaxtune asks of the user's functions (routing, what they return);
  * `sources`: the forms of `data` behind one protocol, `BatchSource`;
  * `step`: one member's step, divergence rollback and evaluation, traced;
  * `programs`: the compiled programs, sharded over the devices and cached;
  * `trainer`: `Trainer`, which wires them together.
"""

from jaxtune.engine.contract import is_init_function as is_init_function
from jaxtune.engine.contract import read_signature as read_signature
from jaxtune.engine.contract import route as route
from jaxtune.engine.programs import PROGRAMS as PROGRAMS
from jaxtune.engine.programs import default_eval_every as default_eval_every
from jaxtune.engine.sources import BatchSource as BatchSource
from jaxtune.engine.sources import check_data_form as check_data_form
from jaxtune.engine.sources import check_finite_leaves as check_finite_leaves
from jaxtune.engine.sources import leading_length as leading_length
from jaxtune.engine.sources import source_of as source_of
from jaxtune.engine.state import PopulationState as PopulationState
from jaxtune.engine.trainer import Trainer as Trainer
