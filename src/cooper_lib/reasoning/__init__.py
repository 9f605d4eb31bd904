"""Interleaved reasoning (COOPER's stage-2 inference): think, call a perception tool, look at the
generated map, continue, on any backbone, continuing from the KV cache.

The turn format it reads and writes (`TurnFormat`, `RETRY_PROMPT`) lives in `cooper_lib.data.turns`
and is re-exported here."""

from typing import TYPE_CHECKING

from cooper_lib.lazy import lazy_exports

if TYPE_CHECKING:
    from cooper_lib.data.turns import RETRY_PROMPT, ParsedTurn, TurnFormat
    from cooper_lib.reasoning.context import KVContext, StepOutput
    from cooper_lib.reasoning.policy import (
        AdaptivePolicy,
        PerceiveFirstPolicy,
        Policy,
        TextOnlyPolicy,
        TurnPlan,
        get_policy,
    )
    from cooper_lib.reasoning.reasoner import (
        DEPTH_DISPLAY_RANGE,
        FROM_FORMAT,
        InterleavedReasoner,
        default_codecs,
    )
    from cooper_lib.reasoning.sampling import SamplingConfig, TokenSampler
    from cooper_lib.reasoning.stopping import TextStopper
    from cooper_lib.reasoning.trace import ReasoningStep, ReasoningTrace, StreamEvent

__all__ = [
    "DEPTH_DISPLAY_RANGE",
    "FROM_FORMAT",
    "RETRY_PROMPT",
    "AdaptivePolicy",
    "InterleavedReasoner",
    "KVContext",
    "ParsedTurn",
    "PerceiveFirstPolicy",
    "Policy",
    "ReasoningStep",
    "ReasoningTrace",
    "SamplingConfig",
    "StepOutput",
    "StreamEvent",
    "TextOnlyPolicy",
    "TextStopper",
    "TokenSampler",
    "TurnFormat",
    "TurnPlan",
    "default_codecs",
    "get_policy",
]

#: Public name -> the module defining it (None: a submodule); imported on first access.
_EXPORTS = {
    "RETRY_PROMPT": "cooper_lib.data.turns",
    "ParsedTurn": "cooper_lib.data.turns",
    "TurnFormat": "cooper_lib.data.turns",
    "KVContext": "cooper_lib.reasoning.context",
    "StepOutput": "cooper_lib.reasoning.context",
    "AdaptivePolicy": "cooper_lib.reasoning.policy",
    "PerceiveFirstPolicy": "cooper_lib.reasoning.policy",
    "Policy": "cooper_lib.reasoning.policy",
    "TextOnlyPolicy": "cooper_lib.reasoning.policy",
    "TurnPlan": "cooper_lib.reasoning.policy",
    "get_policy": "cooper_lib.reasoning.policy",
    "DEPTH_DISPLAY_RANGE": "cooper_lib.reasoning.reasoner",
    "FROM_FORMAT": "cooper_lib.reasoning.reasoner",
    "InterleavedReasoner": "cooper_lib.reasoning.reasoner",
    "default_codecs": "cooper_lib.reasoning.reasoner",
    "SamplingConfig": "cooper_lib.reasoning.sampling",
    "TokenSampler": "cooper_lib.reasoning.sampling",
    "TextStopper": "cooper_lib.reasoning.stopping",
    "ReasoningStep": "cooper_lib.reasoning.trace",
    "ReasoningTrace": "cooper_lib.reasoning.trace",
    "StreamEvent": "cooper_lib.reasoning.trace",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
