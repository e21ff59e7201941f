"""LLM archetypes: decisions of groups of agents asked of a language model (docs/behavior_llm.md).

:class:`LLMArchetypes` (the process), the answer contracts (:mod:`.answers`),
the backends (:mod:`.backends`: mock, OpenAI-compatible, transformers,
llama.cpp), the client (:mod:`.client`: retries, concurrency, counts) and the
answer cache (:mod:`.cache`).
"""
from lpm_graph.behavior.llm.answers import AnswerContract, AnswerError, ChoiceAnswer, ProbabilityAnswer, make_contract
from lpm_graph.behavior.llm.backends import (Backend, BackendError, LlamaCppBackend, MockBackend, OpenAIBackend,
                                             Request, TransformersBackend, make_backend)
from lpm_graph.behavior.llm.cache import AnswerCache, request_key
from lpm_graph.behavior.llm.client import LLMClient, Result
from lpm_graph.behavior.llm.observed import VenueMean
from lpm_graph.behavior.llm.process import LLMAnswerError, LLMArchetypes, Variable

__all__ = ["LLMArchetypes", "LLMAnswerError", "Variable", "AnswerContract", "AnswerError", "ProbabilityAnswer",
           "ChoiceAnswer", "make_contract", "Backend", "BackendError", "Request", "MockBackend", "OpenAIBackend",
           "TransformersBackend", "LlamaCppBackend", "make_backend", "AnswerCache", "request_key", "LLMClient",
           "Result", "VenueMean"]
