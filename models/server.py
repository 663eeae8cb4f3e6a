"""Chat models behind an LLM server (llama.cpp's llama-server, vLLM, Ollama, LM Studio,
llama-cpp-python's server), through the OpenAI-compatible chat completions API.

A sibling of ``llama.py`` behind the same ``TextGenerator`` interface. What the
servers share goes through the official ``openai`` client (streaming, timeouts,
retries with backoff on 429, 5xx and dropped connections); what they do not
share is chosen by the server's kind, found from ``/v1/models`` or configured:
how a JSON schema is passed, how prompts are counted (a tokenize endpoint, else
a conservative estimate) and where the context length is read. The client is
imported only by ``connect``.

Streams are read by a thread of their own, so ``close()`` and a caller's stop
check free the caller at once, even while the server is still queueing the
request; the connection is dropped, and the server stops generating, at the
server's next token.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .base import (
    ChatMessage,
    Embedder,
    GenerationStats,
    ModelInfo,
    SamplingParams,
    TextGenerator,
    TextStream,
)
from .errors import (
    ModelError,
    ServerAuthError,
    ServerContextError,
    ServerError,
    ServerModelError,
    ServerStreamError,
    ServerUnreachableError,
)

KINDS = ("auto", "openai", "llama.cpp", "llama-cpp-python", "vllm", "ollama")
"""Server kinds: 'auto' detects one from ``/v1/models``; 'openai' is any other server."""

DEFAULT_CONTEXT = 2048
"""Context assumed when neither the server nor the configuration says (llama-cpp-python's
and older Ollama's default); set ``context_length`` in the entry for more."""

ESTIMATE_CHARS_PER_TOKEN = 3.0
"""Where a server cannot count tokens, a prompt is taken to need one token per three bytes
of UTF-8: more than English text takes with common tokenizers (about four), so the
context budget errs on the safe side."""

MESSAGE_OVERHEAD = 8
"""Tokens a chat template adds per message (role markers), counted on top of the text."""

TEMPLATE_ALLOWANCE = 64
"""Tokens a chat template may add once per prompt where it cannot be seen: some add a default
system prompt when none is given (SmolLM2's adds 20), plus the generation prompt."""

POLL_S = 0.05
"""How often a waiting stream asks its caller's stop check."""


@dataclass(frozen=True)
class ServerConfig:
    """One registered server: where it is and what it serves. No secret is kept here."""

    name: str
    url: str
    """The OpenAI-compatible base URL, ending in /v1 (http://127.0.0.1:8080/v1)."""
    model: str
    """The model name the server serves (``/v1/models`` lists them)."""
    api_key_env: str | None = None
    """Environment variable holding the API key; None sends no real key."""
    concurrency: int = 1
    """Calls dpl sends at once: match the server's slots (llama-server --parallel)."""
    context_length: int = 0
    """Context tokens per request; 0 asks the server, else ``DEFAULT_CONTEXT``."""
    kind: str = "auto"
    timeout_s: float = 300.0
    """Longest wait for the server's next byte (also the time a queued request may wait)."""
    max_retries: int = 3
    """Retries, with exponential backoff, on 429, 5xx and refused or reset connections."""
    embedding_model: str | None = None
    """A model the same server embeds with (``/v1/embeddings``); None: embed locally."""

    @property
    def root(self) -> str:
        """The server's address without the /v1 suffix (where /props, /tokenize live)."""
        base = self.url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    @property
    def address(self) -> str:
        return urlsplit(self.url).netloc or self.url

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "name"}
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> ServerConfig:
        """The entry saved under ``name``; raises ServerError naming the first field that is
        missing or of the wrong kind (a hand-edited settings file)."""
        for key, (kinds, what) in _ENTRY_FIELDS.items():
            if key not in d:
                if key in ("url", "model"):
                    raise ServerError(_entry_problem(name, f"no {key!r} given"))
                continue
            value = d[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                shown = json.dumps(value)[:60]
                raise ServerError(_entry_problem(name, f"{key!r} is {shown}; it must be {what}"))
        return cls(name=name, **{k: v for k, v in d.items() if k in _ENTRY_FIELDS})

    def check(self) -> None:
        """Raises ServerError for values that cannot work, naming the fix."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError(
                f"Server URL {self.url!r} is not an http(s) URL. Give the OpenAI-compatible "
                "base URL, e.g. --url http://127.0.0.1:8080/v1."
            )
        if not self.model.strip():
            raise ServerError(
                "Give the served model name with --model (see the server's /v1/models)."
            )
        if self.concurrency < 1:
            raise ServerError(f"--concurrency must be at least 1 (got {self.concurrency}).")
        if self.kind not in KINDS:
            raise ServerError(f"Unknown server kind {self.kind!r}: use one of {', '.join(KINDS)}.")


_ENTRY_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "url": ((str,), "a text"),
    "model": ((str,), "a text"),
    "api_key_env": ((str, type(None)), "a text or null"),
    "concurrency": ((int,), "a whole number"),
    "context_length": ((int,), "a whole number"),
    "kind": ((str,), "a text"),
    "timeout_s": ((int, float), "a number of seconds"),
    "max_retries": ((int,), "a whole number"),
    "embedding_model": ((str, type(None)), "a text or null"),
}
"""A saved server entry's fields: the kinds each may hold, and those kinds in words."""


def _entry_problem(name: str, problem: str) -> str:
    return (
        f"Server {name!r} in the settings: {problem}. Register it again: dpl models remove "
        f"{name}, then dpl models add {name} --url ... --model ... (`dpl locate` shows the file)."
    )


def server_model_id(config: ServerConfig, model: str | None = None) -> str:
    """The cache key of a served model: its name and the server's address."""
    return f"{model or config.model}@{config.address}"


# -- errors ---------------------------------------------------------------------------
_CONTEXT_WORDS = ("context", "too long", "maximum", "exceed", "n_ctx", "tokens")


def _api_key(config: ServerConfig) -> str:
    import os

    if not config.api_key_env:
        return "none"  # the client needs some value; servers without auth ignore it
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ServerAuthError(
            f"The API key for {config.url} is read from ${config.api_key_env}, which is not "
            f"set. Export it (export {config.api_key_env}=...) and run again."
        )
    return key


def _detail(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            msg = inner.get("message") or inner.get("detail")
            if msg:
                return str(msg)
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return str(getattr(err, "message", "") or err)


def translate(err: BaseException, config: ServerConfig, served: Sequence[str] = ()) -> ModelError:
    """An ``openai`` exception as one line that names the URL and the remedy."""
    import openai

    url, name = config.url, config.name
    if isinstance(err, ModelError):
        return err
    if isinstance(err, openai.APITimeoutError):
        return ServerUnreachableError(
            f"{url} did not answer within {config.timeout_s:g} s (after {config.max_retries} "
            "retries). The server may be stuck or overloaded: check it, lower the entry's "
            f"--concurrency, or raise --timeout (dpl models add {name} ... --timeout S)."
        )
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__ or err.__context__
        why = f" ({type(cause).__name__}: {cause})" if cause else ""
        return ServerUnreachableError(
            f"Could not reach {url}{why}. Is the server running? Start it (for example "
            "`llama-server -m MODEL.gguf --port 8080`) or fix the address: "
            f"dpl models add {name} --url http://HOST:PORT/v1 --model {config.model}."
        )
    if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
        code = getattr(err, "status_code", "")
        if config.api_key_env:
            fix = f"Check that ${config.api_key_env} holds a key this server accepts."
        else:
            fix = (
                f"The server wants an API key: put it in an environment variable and "
                f"register it with dpl models add {name} --url {url} --model "
                f"{config.model} --api-key-env VAR."
            )
        return ServerAuthError(f"{url} refused the request ({code}: {_detail(err)}). {fix}")
    if isinstance(err, openai.NotFoundError):
        listed = f" It serves: {', '.join(served)}." if served else ""
        return ServerModelError(
            f"{url} does not serve a model named {config.model!r} (404: {_detail(err)}).{listed} "
            f"Fix the name with dpl models add {name} --url {url} --model SERVED_NAME."
        )
    if isinstance(err, openai.APIStatusError):
        code = err.status_code
        text = _detail(err)
        if code in (400, 413, 422) and any(w in text.lower() for w in _CONTEXT_WORDS):
            return ServerContextError(
                f"{url} says the prompt does not fit {config.model!r}: {text}. Start the server "
                "with a larger context, or register the entry with a smaller --context-length "
                "so dpl shortens its prompts to fit."
            )
        if code == 429 or code >= 500:
            return ServerError(
                f"{url} answered {code} ({text}) after {config.max_retries} retries. The server "
                f"is overloaded or failing: lower --concurrency for {name!r} or check the server."
            )
        return ServerError(f"{url} rejected the request ({code}: {text}).")
    if isinstance(err, openai.OpenAIError):
        return ServerError(f"{url}: {err}")
    return ServerError(f"{url}: {type(err).__name__}: {err}")


# -- streaming --------------------------------------------------------------------------
_END = object()


class ServerStream(TextStream):
    """Text deltas of one streamed chat completion, read by a thread of its own."""

    def __init__(
        self,
        generator: ServerGenerator,
        request: Callable[[], Any],
        prompt_tokens: int,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self._gen = generator
        self._prompt_tokens = prompt_tokens
        self._stop = stop
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._parts: list[str] = []
        self._deltas = 0
        self._finish = ""
        self._usage: Any = None
        self._start = time.perf_counter()
        self._first = 0.0
        self._raw: Any = None
        self._slot_lock = threading.Lock()
        self._holds_slot = False
        self.stats = None
        self._reader = threading.Thread(
            target=self._read,
            args=(request,),
            daemon=True,
            name=f"dpl-stream-{generator.config.name}",
        )
        self._reader.start()

    @property
    def text(self) -> str:  # type: ignore[override]
        return "".join(self._parts)

    def _read(self, request: Callable[[], Any]) -> None:
        # A slot first: however many users and items run at once, no more than the entry's
        # concurrency are in flight at the server; a stream closed while waiting never sends.
        slots = self._gen._slots
        while not slots.acquire(timeout=POLL_S):
            if self._closed.is_set():
                return
        with self._slot_lock:
            self._holds_slot = True
        if self._closed.is_set():  # closed while the slot was being taken
            self._release_slot()
            return
        try:
            if self._closed.is_set():
                return
            raw = request()
            self._raw = raw
            for chunk in raw:
                if self._closed.is_set():
                    break
                self._queue.put(("chunk", chunk))
            self._queue.put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the reading caller
            self._queue.put(("error", err))
        finally:
            raw = self._raw
            if raw is not None:
                try:
                    raw.close()
                except Exception:  # noqa: BLE001 - the connection is going away anyway
                    pass
            self._release_slot()

    def _release_slot(self) -> None:
        """Once per stream: when it ends, or at once when it is closed (the reader may still
        be waiting for a server that has not answered; its connection is dropped later)."""
        with self._slot_lock:
            if self._holds_slot:
                self._holds_slot = False
                self._gen._slots.release()

    def __next__(self) -> str:
        while True:
            if self.stats is not None:
                raise StopIteration
            if self._closed.is_set() or (self._stop is not None and self._stop()):
                self._end("cancelled")
                raise StopIteration
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                if not self._finish:
                    self._end("error")
                    hint = ""
                    if self._gen.kind == "llama-cpp-python":
                        hint = (
                            " llama-cpp-python's server ends a running answer when another "
                            "request arrives unless it is started with "
                            "--interrupt_requests False (or use --concurrency 1)."
                        )
                    raise ServerStreamError(
                        f"{self._gen.config.url} closed the stream before the answer was "
                        f"complete ({self._deltas} tokens in). Nothing was stored; check the "
                        f"server's log and run again (finished work is kept).{hint}"
                    )
                self._end(self._finish)
                raise StopIteration
            what, value = item
            if what == "error":
                self._end("error")
                if self._deltas:
                    raise ServerStreamError(
                        f"{self._gen.config.url} stopped in the middle of an answer "
                        f"({self._deltas} tokens in: {type(value).__name__}). Nothing was "
                        "stored; check the server and run again (finished work is kept)."
                    ) from None
                raise translate(value, self._gen.config, self._gen.served) from None
            delta = self._take(value)
            if delta:
                return delta

    def _take(self, chunk: Any) -> str:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage
        choices = getattr(chunk, "choices", None) or []
        if not choices:
            return ""
        choice = choices[0]
        if getattr(choice, "finish_reason", None):
            self._finish = choice.finish_reason
        delta = getattr(getattr(choice, "delta", None), "content", None) or ""
        if delta:
            if not self._first:
                self._first = time.perf_counter()
            self._deltas += 1
            self._parts.append(delta)
        return delta

    def close(self) -> None:
        """Stop now: the caller is free at once; the connection is closed by the reader."""
        if self.stats is None:
            self._closed.set()
            self._end("cancelled")

    def _end(self, reason: str) -> None:
        if self.stats is not None:
            return
        self._closed.set()
        self._release_slot()
        end = time.perf_counter()
        first = self._first or end
        usage = self._usage
        completion = getattr(usage, "completion_tokens", None) or self._deltas
        prompt = getattr(usage, "prompt_tokens", None) or self._prompt_tokens
        decode_s = end - first
        self.stats = GenerationStats(
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            time_to_first_token_s=first - self._start,
            total_s=end - self._start,
            tokens_per_s=(completion - 1) / decode_s if completion > 1 and decode_s > 0 else 0.0,
            finish_reason=reason,
        )


# -- the generator ----------------------------------------------------------------------
class ServerGenerator(TextGenerator):
    """A chat model behind an OpenAI-compatible server; up to ``concurrency`` calls at once,
    counted over every thread that uses it (further calls wait for a free slot)."""

    can_stream = True
    supports_json_schema = True
    stops_while_waiting = True

    def __init__(
        self,
        config: ServerConfig,
        client: Any,
        kind: str,
        info: ModelInfo,
        served: Sequence[str],
        slots: int | None,
        warnings_: list[str],
    ) -> None:
        self.config = config
        self.client = client
        self.kind = kind
        self.info = info
        self.served = tuple(served)
        self.slots = slots
        """The server's own parallel slots where it says (llama-server's /props)."""
        self.concurrency = config.concurrency
        self._slots = threading.BoundedSemaphore(config.concurrency)
        """Requests in flight at the server, from every thread together."""
        self.warnings = warnings_
        self.url = config.url
        self._counting = {
            "llama.cpp": "template",
            "vllm": "messages",
            "llama-cpp-python": "text",
        }.get(kind, "estimate")
        self._counted: dict[int, int] = {}
        """Recent counts: the budget counts a prompt, then the request needs it again."""
        self._count_lock = threading.Lock()

    # tokens ------------------------------------------------------------------------------
    @property
    def larger_context(self) -> str:
        return (
            f"start the server with a larger context and register it with dpl models add "
            f"{self.config.name} --url {self.config.url} --model {self.config.model} "
            "--context-length N"
        )

    def estimate_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The conservative count used where the server cannot count."""
        text_bytes = sum(len(m["content"].encode("utf-8")) for m in messages)
        return (
            math.ceil(text_bytes / ESTIMATE_CHARS_PER_TOKEN)
            + MESSAGE_OVERHEAD * len(messages)
            + TEMPLATE_ALLOWANCE
        )

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens, from the server's tokenizer where it has an endpoint for it."""
        key = hash(tuple((m["role"], m["content"]) for m in messages))
        with self._count_lock:
            if key in self._counted:
                return self._counted[key]
        n = self._count(messages)
        with self._count_lock:
            if len(self._counted) > 256:
                self._counted.clear()
            self._counted[key] = n
        return n

    def _count(self, messages: Sequence[ChatMessage]) -> int:
        how = self._counting
        if how == "estimate":
            return self.estimate_tokens(messages)
        root = self.config.root
        msgs = [dict(m) for m in messages]
        try:
            if how == "messages":  # vLLM applies the chat template itself
                out = self.client.post(
                    f"{root}/tokenize",
                    cast_to=object,
                    body={
                        "model": self.config.model,
                        "messages": msgs,
                        "add_generation_prompt": True,
                    },
                )
                return int(out["count"])
            if how == "template":  # llama-server: the template, then its tokenizer
                prompt = self.client.post(
                    f"{root}/apply-template", cast_to=object, body={"messages": msgs}
                )["prompt"]
                out = self.client.post(
                    f"{root}/tokenize",
                    cast_to=object,
                    body={"content": prompt, "add_special": True},
                )
                return len(out["tokens"])
            # llama-cpp-python counts plain text: add the template's markers per message
            text = "\n".join(m["content"] for m in messages)
            out = self.client.post(
                f"{root}/extras/tokenize/count",
                cast_to=object,
                body={"input": text, "model": self.config.model},
            )
            return int(out["count"]) + MESSAGE_OVERHEAD * len(messages) + TEMPLATE_ALLOWANCE
        except Exception as err:  # noqa: BLE001 - translated, or counting falls back
            import openai

            if isinstance(
                err,
                openai.APIConnectionError
                | openai.AuthenticationError
                | openai.PermissionDeniedError,
            ):
                raise translate(err, self.config, self.served) from None
            self._counting = "estimate"
            self.warnings.append(
                f"{self.config.url} could not count tokens ({type(err).__name__}); "
                "prompts are measured with a conservative estimate instead."
            )
            return self.estimate_tokens(messages)

    # requests ----------------------------------------------------------------------------
    def _sampling_extra(self) -> dict[str, Any]:
        # The paper's sampling only: llama.cpp servers default to top_k 40 and min_p 0.05.
        if self.kind in ("llama.cpp", "llama-cpp-python"):
            return {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
        return {}

    def schema_request(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The request fields that constrain output to ``schema`` on this kind of server."""
        standard = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        }
        if self.kind == "llama-cpp-python":
            return {"response_format": {"type": "json_object", "schema": schema}}
        if self.kind == "llama.cpp":
            return {"extra_body": {"json_schema": schema}}
        if self.kind == "vllm":
            return {"extra_body": {"structured_outputs": {"json": schema}}}
        if self.kind == "ollama":
            return {"response_format": standard, "extra_body": {"format": schema}}
        return {"response_format": standard}

    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        schema: dict[str, Any] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> ServerStream:
        """Raises ContextOverflowError-like ServerContextError when the prompt cannot fit."""
        from .errors import ContextOverflowError

        if params.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {params.max_tokens}")
        prompt_tokens = self.count_tokens(messages)
        if self.n_ctx and prompt_tokens + params.max_tokens > self.n_ctx:
            raise ContextOverflowError(
                prompt_tokens + params.max_tokens,
                self.n_ctx,
                self.info.model_id,
                self.larger_context,
            )
        extra = dict(self._sampling_extra())
        fields: dict[str, Any] = {}
        if schema is not None:
            fields = self.schema_request(schema)
            extra.update(fields.pop("extra_body", {}))
        kwargs: dict[str, Any] = dict(
            model=self.config.model,
            messages=[dict(m) for m in messages],
            stream=True,
            stream_options={"include_usage": True},
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            **fields,
        )
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if extra:
            kwargs["extra_body"] = extra
        return ServerStream(
            self, lambda: self.client.chat.completions.create(**kwargs), prompt_tokens, stop
        )

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        params: SamplingParams,
        *,
        retries: int = 1,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], GenerationStats]:
        from .structured import complete_json

        return complete_json(
            self.info.model_id,
            lambda p: self.stream(messages, p, schema=schema, stop=stop),
            schema,
            params,
            retries=retries,
            stop=stop,
            room=(lambda: self.n_ctx - self.count_tokens(messages)) if self.n_ctx else None,
        )

    def close(self) -> None:
        self.client.close()


# -- connecting -------------------------------------------------------------------------
def _client(
    config: ServerConfig, *, timeout_s: float | None = None, max_retries: int | None = None
) -> Any:
    import openai

    timeout = config.timeout_s if timeout_s is None else timeout_s
    return openai.OpenAI(
        base_url=config.url,
        api_key=_api_key(config),
        timeout=openai.Timeout(timeout, connect=min(10.0, timeout)),
        max_retries=config.max_retries if max_retries is None else max_retries,
    )


def _detect_kind(models: list[dict[str, Any]], props: dict[str, Any] | None) -> str:
    owners = {str(m.get("owned_by", "")).lower() for m in models}
    if props is not None or "llamacpp" in owners or any("meta" in m for m in models):
        return "llama.cpp"
    if "vllm" in owners or any("max_model_len" in m for m in models):
        return "vllm"
    if "me" in owners:
        return "llama-cpp-python"
    if "library" in owners or "ollama" in owners:
        return "ollama"
    return "openai"


@dataclass(frozen=True)
class Probe:
    """What ``/v1/models`` (and llama-server's ``/props``) say about a server."""

    kind: str
    served: tuple[str, ...]
    context_length: int
    """0 when the server does not say."""
    slots: int | None


def probe(config: ServerConfig, client: Any) -> Probe:
    """Ask the server what it serves. Raises ServerError subclasses with the remedy."""
    try:
        listing = client.get("/models", cast_to=object)
    except Exception as err:  # noqa: BLE001 - translated to one line
        raise translate(err, config) from None
    models = [m for m in (listing or {}).get("data", []) if isinstance(m, dict)]
    served = tuple(str(m.get("id", "")) for m in models)
    props = None
    if config.kind in ("auto", "llama.cpp"):
        try:
            got = client.get(f"{config.root}/props", cast_to=object, options={"max_retries": 0})
            props = got if isinstance(got, dict) and "default_generation_settings" in got else None
        except Exception:  # noqa: BLE001 - not llama-server
            props = None
    kind = _detect_kind(models, props) if config.kind == "auto" else config.kind
    entry = next((m for m in models if m.get("id") == config.model), None)
    ctx, slots = 0, None
    if props is not None:
        ctx = int((props.get("default_generation_settings") or {}).get("n_ctx") or 0)
        slots = props.get("total_slots")
    if entry is not None and not ctx:
        ctx = int(entry.get("max_model_len") or 0)
    return Probe(kind, served, ctx, int(slots) if slots else None)


def connect(config: ServerConfig) -> ServerGenerator:
    """Check that the server answers and serves ``config.model``; return its generator.

    Raises ServerUnreachableError, ServerAuthError, ServerModelError or ServerError."""
    config.check()
    client = _client(config)
    found = probe(config, client)
    if found.served and config.model not in found.served:
        raise ServerModelError(
            f"{config.url} does not serve a model named {config.model!r}; it serves "
            f"{', '.join(found.served)}. Fix the name: dpl models add {config.name} --url "
            f"{config.url} --model {found.served[0]}."
        )
    notes: list[str] = []
    ctx = config.context_length or found.context_length
    if not ctx:
        ctx = DEFAULT_CONTEXT
        notes.append(
            f"{config.url} does not report its context length; {DEFAULT_CONTEXT} tokens are "
            f"assumed. Set the real one with dpl models add {config.name} ... --context-length N."
        )
    info = ModelInfo(
        model_id=server_model_id(config),
        path="",
        context_length=found.context_length or ctx,
        n_ctx=ctx,
        device=f"server {config.address}",
    )
    return ServerGenerator(config, client, found.kind, info, found.served, found.slots, notes)


def reachability(config: ServerConfig, *, timeout_s: float = 3.0) -> tuple[bool, str, Probe | None]:
    """(reachable, a short description, what it reported) for ``dpl models``; never raises."""
    try:
        config.check()
        client = _client(config, timeout_s=timeout_s, max_retries=0)
    except ModelError as err:
        return False, str(err), None
    try:
        found = probe(config, client)
    except ModelError as err:
        return False, str(err), None
    finally:
        client.close()
    if found.served and config.model not in found.served:
        return False, f"does not serve {config.model!r} (serves {', '.join(found.served)})", found
    return True, f"serves {config.model!r} ({found.kind})", found


# -- embeddings -------------------------------------------------------------------------
class ServerEmbedder(Embedder):
    """Sentence embeddings from a server's ``/v1/embeddings``; rows come back L2-normalised."""

    def __init__(self, config: ServerConfig, client: Any, model: str, dim: int) -> None:
        self.config = config
        self.client = client
        self.model = model
        self.dim = dim
        self.info = ModelInfo(
            model_id=server_model_id(config, model), path="", device=f"server {config.address}"
        )

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            try:
                reply = self.client.embeddings.create(model=self.model, input=batch)
            except Exception as err:  # noqa: BLE001 - translated to one line
                raise translate(err, self.config) from None
            rows = sorted(reply.data, key=lambda d: d.index)
            vectors = [sentence_vector(r.embedding) for r in rows]
            shapes = {v.shape for v in vectors}
            if len(vectors) != len(batch) or shapes != {(self.dim,)}:
                raise ServerError(
                    f"{self.config.url} returned {len(vectors)} embeddings of shapes "
                    f"{sorted(shapes)} for {len(batch)} texts of {self.dim} dimensions "
                    f"from {self.model!r}."
                )
            out[start : start + len(batch)] = np.stack(vectors)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def sentence_vector(embedding: Any) -> np.ndarray:
    """One text's vector from an ``/v1/embeddings`` row.

    Most servers pool for us. A llama.cpp server whose model has no pooling of its own
    (a chat model started with ``--embedding``) answers one vector per token instead; those
    are mean-pooled here so that any model the server loads can embed."""
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim == 2 and vector.shape[0] > 0:
        return vector.mean(axis=0)
    return vector


def embedder_id(config: ServerConfig) -> str:
    """The id a server embedder caches under, known without connecting."""
    assert config.embedding_model
    return server_model_id(config, config.embedding_model)


def connect_embedder(config: ServerConfig) -> ServerEmbedder:
    """The server's embedding model ``config.embedding_model``; its dimension is asked once."""
    if not config.embedding_model:
        raise ServerError(f"Server entry {config.name!r} has no --embedding-model.")
    config.check()
    client = _client(config)
    probe_embedder = ServerEmbedder(config, client, config.embedding_model, 0)
    try:
        reply = client.embeddings.create(model=config.embedding_model, input=["dimension probe"])
    except Exception as err:  # noqa: BLE001 - translated to one line
        raise translate(err, config) from None
    probe_embedder.dim = int(sentence_vector(reply.data[0].embedding).shape[-1])
    return probe_embedder
