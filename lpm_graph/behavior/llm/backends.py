"""Backends: where a question goes.  Each answers one request, or raises :class:`BackendError`.

=================  ===============================================  ========================
backend            what                                             extra
=================  ===============================================  ========================
``mock``           deterministic answers from a hash of the         (none)
                   messages; counts its calls
``openai``         any OpenAI-compatible chat completions           ``lpm-graph[llm]``
                   endpoint (``base_url``: vLLM, llama.cpp server,
                   Ollama, OpenAI) through the ``openai`` SDK
``transformers``   a local causal language model                    ``lpm-graph[llm-local]``
``llama_cpp``      a local GGUF model through ``llama-cpp-python``  ``lpm-graph[llm-llamacpp]``
=================  ===============================================  ========================

A backend is given a :class:`Request` (chat messages, the answer's JSON
schema, temperature, seed, a token limit, and for scoring the candidate
answers) and a timeout in seconds; :meth:`Backend.complete` returns the reply's
text, :meth:`Backend.score` the log-probability of each candidate (``None``
where the backend did not score one).  Retries, backoff, caching and
concurrency are the client's (:mod:`lpm_graph.behavior.llm.client`), not
the backend's: the SDK's own retries are turned off so that every call is
counted.

**API keys come from the environment only**: the ``openai`` backend reads the
variable named by ``api_key_env`` (default ``OPENAI_API_KEY``) when it first
calls; a key is never a config value, never part of a cache key and never
written to an output.
"""
from __future__ import annotations

import abc

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lpm_graph.errors import ConfigError

__all__ = ["Request", "BackendError", "Backend", "MockBackend", "OpenAIBackend", "TransformersBackend",
           "LlamaCppBackend", "make_backend", "BACKENDS"]


@dataclass(frozen=True)
class Request:
    """One question: chat ``messages`` (``({"role": ..., "content": ...}, ...)``) and how to answer it."""

    messages: tuple
    schema: dict
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 64
    candidates: tuple[str, ...] | None = None   # set: score these (log-probabilities) instead of generating
    label: str = ""                              # the group asked (for messages), not part of the key

    def payload(self) -> dict:
        return {"messages": [dict(m) for m in self.messages], "schema": self.schema,
                "temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens,
                "candidates": None if self.candidates is None else list(self.candidates)}


class BackendError(Exception):
    """A call that did not return an answer.

    Args:
        kind (str): what went wrong, as counted in reports (``"429"``, ``"500"``, ``"timeout"``,
            ``"connection"``, ``"malformed"``, ``"refused"``).
        retryable (bool): another try may succeed (rate limits, server errors, timeouts, malformed responses).
        retry_after (float, optional): seconds the server asked to wait (``Retry-After``).
    """

    def __init__(self, message: str, kind: str = "error", retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retryable, self.retry_after = kind, retryable, retry_after


class Backend(abc.ABC):
    """Base of the backends (module docstring)."""

    kind: str = ""
    #: concurrent requests it takes (a local model answers one at a time)
    max_concurrency: int = 1
    #: whether :meth:`score` is available
    supports_logprobs: bool = False

    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """The model's name as the cache key and the run's metadata record it."""

    @property
    def endpoint(self) -> str:
        return ""

    def identity(self) -> dict:
        """What identifies the answers this backend gives (part of every cache key)."""
        return {"backend": self.kind, "model": self.model_id, "endpoint": self.endpoint}

    def describe(self) -> dict:
        """The identity and settings, for reports (no secrets)."""
        return self.identity()

    @abc.abstractmethod
    def complete(self, request: Request, timeout: float) -> str:
        """The reply text to ``request`` within ``timeout`` seconds (errors as the client's retry rules expect)."""

    def score(self, request: Request, timeout: float) -> list[float | None]:
        raise BackendError(f"the {self.kind} backend does not give log-probabilities; use answer.method: json",
                           kind="unsupported", retryable=False)


def _digest(*parts) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()[:8], "big")


class MockBackend(Backend):
    """Deterministic answers without a model: for tests, benchmarks and dry runs.

    The reply to a request is a pure function of its messages and seed: a
    probability ``u`` in ``[0, 1]`` (three decimals) from their SHA-256, shaped
    to the requested schema (``{"probability": u}`` or the option at ``u`` of a
    choice), or ``answer(request)`` if given.  Scores are log-probabilities
    from the same hash.

    Args:
        answer (callable | float, optional): ``request -> reply text``, or a fixed probability.
        latency (float): seconds each call sleeps (a stand-in for a server). (default: 0)
        model (str): the model id it reports. (default: ``"mock"``)
        max_concurrency (int): concurrent calls it takes. (default: 8)
    """

    kind = "mock"
    supports_logprobs = True

    def __init__(self, answer: Callable | float | None = None, latency: float = 0.0, model: str = "mock",
                 max_concurrency: int = 8):
        self.answer, self.latency, self.model = answer, float(latency), str(model)
        self.max_concurrency = int(max_concurrency)
        self.calls = 0
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.model

    def _count(self) -> None:
        with self._lock:
            self.calls += 1
        if self.latency:
            time.sleep(self.latency)

    def complete(self, request: Request, timeout: float) -> str:
        self._count()
        if callable(self.answer):
            return self.answer(request)
        u = float(self.answer) if self.answer is not None else (_digest(request.payload()["messages"], request.seed)
                                                               % 1001) / 1000
        props = request.schema.get("properties", {})
        if "choice" in props:
            options = props["choice"]["enum"]
            return json.dumps({"choice": options[min(int(u * len(options)), len(options) - 1)]})
        return json.dumps({"probability": u})

    def score(self, request: Request, timeout: float) -> list[float | None]:
        self._count()
        base = request.payload()["messages"]
        return [-((_digest(base, request.seed, c) % 1000) / 200) for c in request.candidates or ()]


#: what an OpenAI-compatible server may be asked to enforce (:class:`OpenAIBackend`)
RESPONSE_FORMATS = ("json_schema", "json_object_schema", "json_object", "none")


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # an HTTP date
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class OpenAIBackend(Backend):
    """An OpenAI-compatible chat completions endpoint through the ``openai`` SDK (extra ``llm``).

    Args:
        model (str): the model name the server serves.
        base_url (str, optional): e.g. ``http://127.0.0.1:8000/v1`` (vLLM), ``http://127.0.0.1:8080/v1``
            (llama.cpp server), ``http://127.0.0.1:11434/v1`` (Ollama); ``None``: OpenAI's.
        api_key_env (str): the environment variable holding the key; unset: a placeholder key, which
            local servers accept. With ``base_url`` unset (OpenAI's service) the variable must be set.
        response_format (str): what the server is asked to enforce; the client validates every reply regardless.
            ``json_schema`` (the answer's schema, strict: OpenAI, vLLM, the llama.cpp server ``llama-server``),
            ``json_object_schema`` (``{"type": "json_object", "schema": ...}``: the server of
            ``llama-cpp-python``, which refuses ``json_schema`` with HTTP 500 and without the schema lets a
            small model echo the schema of the instruction), ``json_object`` (any JSON) or ``none``.
        top_logprobs (int): alternatives asked for when scoring candidates (``answer.method: logprobs``);
            a candidate is scored by the first token of the reply equal to it (case and spaces aside).
        max_concurrency (int): concurrent requests. (default: 8)
        extra_body (Mapping, optional): more fields of the request body (server-specific).
        api_key: refused: keys come from the environment only.
    """

    kind = "openai"
    supports_logprobs = True

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 response_format: str = "json_schema", top_logprobs: int = 20, max_concurrency: int = 8,
                 extra_body: Mapping | None = None, api_key=None):
        if api_key is not None:
            raise ConfigError("backend.api_key: an API key is never a config value; put it in an environment "
                              f"variable and name that variable in backend.api_key_env (now {api_key_env!r})")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"backend.model must name the served model, got {model!r}")
        if response_format not in RESPONSE_FORMATS:
            raise ConfigError(f"backend.response_format must be one of {list(RESPONSE_FORMATS)}, got "
                              f"{response_format!r}")
        if base_url is None and not os.environ.get(api_key_env):
            raise ConfigError(f"backend.base_url is unset (OpenAI's service) but the environment variable "
                              f"{api_key_env} holds no API key; export it, or set backend.base_url to a local server")
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.response_format, self.top_logprobs = response_format, int(top_logprobs)
        self.max_concurrency = int(max_concurrency)
        self.extra_body = dict(extra_body or {})
        self._client = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def model_id(self) -> str:
        return self.model

    @property
    def endpoint(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    def describe(self) -> dict:
        return {**self.identity(), "api_key_env": self.api_key_env, "response_format": self.response_format}

    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ConfigError("the openai backend needs the openai SDK: pip install 'lpm-graph[llm]'") from None
            self._client = openai.OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "unused",
                                         max_retries=0)
        return self._client

    def _create(self, request: Request, timeout: float, **extra):
        import openai

        kwargs = dict(model=self.model, messages=[dict(m) for m in request.messages],
                      temperature=request.temperature, max_tokens=request.max_tokens, timeout=timeout, **extra)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        try:
            return self.client().chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:
            raise BackendError(f"no reply within {timeout:g} s ({exc})", kind="timeout") from None
        except openai.APIConnectionError as exc:
            raise BackendError(f"cannot reach {self.endpoint} ({exc})", kind="connection") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ConfigError(f"{self.endpoint} refused the request ({exc.status_code}: {exc.message}); check the "
                              f"API key in ${self.api_key_env}") from None
        except openai.APIStatusError as exc:
            code = exc.status_code
            retryable = code == 429 or code == 408 or code >= 500
            raise BackendError(f"{self.endpoint} answered HTTP {code} ({exc.message})", kind=str(code),
                               retryable=retryable,
                               retry_after=_retry_after(getattr(exc.response, "headers", None))) from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            raise BackendError(f"{self.endpoint} sent a malformed response ({exc})", kind="malformed") from None

    def complete(self, request: Request, timeout: float) -> str:
        extra = {}
        if self.response_format == "json_schema":
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "answer", "schema": request.schema, "strict": True}}
        elif self.response_format == "json_object_schema":
            extra["response_format"] = {"type": "json_object", "schema": request.schema}
        elif self.response_format == "json_object":
            extra["response_format"] = {"type": "json_object"}
        resp = self._create(request, timeout, **extra)
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise BackendError(f"{self.endpoint} sent a response without a message: {str(resp)[:200]}",
                               kind="malformed") from None
        if not isinstance(content, str):
            raise BackendError(f"{self.endpoint} sent a message without text content", kind="malformed")
        return content

    def score(self, request: Request, timeout: float) -> list[float | None]:
        resp = self._create_scoring(request, timeout)
        try:
            top = resp.choices[0].logprobs.content[0].top_logprobs
            pairs = [(t.token, float(t.logprob)) for t in top]
        except (AttributeError, IndexError, TypeError):
            raise BackendError(f"{self.endpoint} sent no log-probabilities (does the server support logprobs?)",
                               kind="malformed") from None
        out: list[float | None] = []
        for candidate in request.candidates or ():
            want = candidate.strip().lower()
            found = [lp for token, lp in pairs if token.strip().lower() == want]
            out.append(max(found) if found else None)
        return out

    def _create_scoring(self, request: Request, timeout: float):
        """One token, with its ``top_logprobs`` alternatives."""
        import dataclasses

        one = dataclasses.replace(request, max_tokens=1)
        return self._create(one, timeout, logprobs=True, top_logprobs=self.top_logprobs)


class TransformersBackend(Backend):
    """A local causal language model through ``transformers`` (extra ``llm-local``).

    Replies are generated greedily at temperature 0 (sampled, seeded by the
    request's seed, above it) and scored by the summed log-probability of each
    candidate's tokens after the prompt (the chat template's, if the tokenizer
    has one, else ``role: content`` lines).

    Args:
        model (str, optional): a model name or folder for ``from_pretrained``.
        model_object, tokenizer: an already loaded model and tokenizer instead.
        model_id (str, optional): the id reported and cached under (default: the model's name or path; for
            an unnamed model object, a digest of its weights).
        device (str): where the model runs. (default: ``"cpu"``)
        local_files_only (bool): never download (``from_pretrained``). (default: ``False``)
    """

    kind = "transformers"
    supports_logprobs = True
    max_concurrency = 1

    def __init__(self, model: str | None = None, model_object=None, tokenizer=None, model_id: str | None = None,
                 device: str = "cpu", local_files_only: bool = False):
        try:
            import transformers
        except ImportError:
            raise ConfigError("the transformers backend needs transformers: pip install 'lpm-graph[llm-local]'") \
                from None
        if model_object is None:
            if model is None:
                raise ConfigError("backend.model must name a model (or folder) for the transformers backend")
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
            model_object = transformers.AutoModelForCausalLM.from_pretrained(model, local_files_only=local_files_only)
        elif tokenizer is None:
            raise ConfigError("the transformers backend given a model object needs its tokenizer too")
        self.model_object = model_object.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        name = model or getattr(getattr(model_object, "config", None), "_name_or_path", "") or ""
        self._model_id = model_id or name or self._weights_digest()

    def _weights_digest(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.model_object.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
        return f"weights-sha256:{h.hexdigest()[:16]}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def prompt(self, request: Request) -> str:
        messages = [dict(m) for m in request.messages]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def _ids(self, text: str, special: bool):
        import torch

        return torch.tensor([self.tokenizer.encode(text, add_special_tokens=special)], device=self.device)

    def complete(self, request: Request, timeout: float) -> str:
        import torch

        ids = self._ids(self.prompt(request), True)
        kwargs = dict(max_new_tokens=request.max_tokens, attention_mask=torch.ones_like(ids),
                      pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else
                      self.tokenizer.eos_token_id)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if request.temperature > 0:
                torch.manual_seed(request.seed or 0)
                out = self.model_object.generate(ids, do_sample=True, temperature=request.temperature, **kwargs)
            else:
                out = self.model_object.generate(ids, do_sample=False, **kwargs)
        return self.tokenizer.decode(out[0, ids.size(1):], skip_special_tokens=True)

    def score(self, request: Request, timeout: float) -> list[float | None]:
        import torch

        prompt = self._ids(self.prompt(request), True)
        out: list[float | None] = []
        with torch.no_grad():
            for candidate in request.candidates or ():
                cand = self._ids(candidate, False)
                ids = torch.cat([prompt, cand], 1)
                logits = self.model_object(ids).logits[0, prompt.size(1) - 1:-1].double()
                logp = torch.log_softmax(logits, -1).gather(1, cand[0].unsqueeze(1)).sum()
                out.append(float(logp))
        return out


class LlamaCppBackend(Backend):
    """A local GGUF model through ``llama-cpp-python`` (extra ``llm-llamacpp``), in this process.

    The reply is constrained to the answer's JSON schema by llama.cpp's grammar
    (``response_format``); scoring by log-probabilities is not offered here
    (serve the model with ``llama_cpp.server`` and use the ``openai`` backend).

    Args:
        model_path (str): the ``.gguf`` file.
        n_ctx (int): context length. (default: 2048)
        model_id (str, optional): the id reported and cached under. (default: the file's name)
    """

    kind = "llama_cpp"
    max_concurrency = 1

    def __init__(self, model_path: str, n_ctx: int = 2048, model_id: str | None = None):
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError("the llama_cpp backend needs llama-cpp-python: pip install 'lpm-graph[llm-llamacpp]'") \
                from None
        self.model_path = str(model_path)
        self.llm = llama_cpp.Llama(model_path=self.model_path, n_ctx=int(n_ctx), verbose=False)
        self._model_id = model_id or os.path.basename(self.model_path)

    @property
    def model_id(self) -> str:
        return self._model_id

    def complete(self, request: Request, timeout: float) -> str:
        out = self.llm.create_chat_completion(
            messages=[dict(m) for m in request.messages], temperature=request.temperature,
            seed=request.seed, max_tokens=request.max_tokens,
            response_format={"type": "json_object", "schema": request.schema})
        return out["choices"][0]["message"]["content"]


BACKENDS = {"mock": MockBackend, "openai": OpenAIBackend, "transformers": TransformersBackend,
            "llama_cpp": LlamaCppBackend}


def make_backend(spec: Mapping | Backend | None) -> Backend:
    """A backend from config: ``{kind: mock | openai | transformers | llama_cpp, <its arguments>}``."""
    if isinstance(spec, Backend):
        return spec
    spec = {k: v for k, v in dict(spec or {"kind": "mock"}).items() if v is not None}  # null: the default
    kind = spec.pop("kind", "mock")
    if kind not in BACKENDS:
        raise ConfigError(f"backend.kind must be one of {sorted(BACKENDS)}, got {kind!r}")
    try:
        return BACKENDS[kind](**spec)
    except TypeError as exc:
        raise ConfigError(f"backend (kind {kind}): {exc}") from None
