"""Study 4: applying tensor-parallel sharding rules to an equinox model with batched tree surgery."""

from ._apply import APPLY as APPLY
from ._apply import apply_matches as apply_matches
from ._apply import shard_model as shard_model
from ._model import BertLike as BertLike
from ._model import leaf_paths as leaf_paths
from ._model import make_bert as make_bert
from ._model import path_string as path_string
from ._rules import BERT_RULES as BERT_RULES
from ._rules import Match as Match
from ._rules import PathGetter as PathGetter
from ._rules import iter_matches as iter_matches
from ._rules import make_mesh as make_mesh
from ._rules import match_rules as match_rules
