"""Interleaved reasoning (COOPER's stage-2 inference): think, call a perception tool, look at the
generated map, continue, on any backbone, continuing from the KV cache.

The turn format it reads and writes (`TurnFormat`, `RETRY_PROMPT`) lives in `cooper_lib.data.turns`
and is re-exported here."""

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
