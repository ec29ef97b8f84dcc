"""ENGINE=vllm: the model behind any OpenAI-compatible vision server at ENGINE_URL (vLLM's
`vllm serve`, llama-server, a Vertex AI MedGemma endpoint), through the official openai SDK.

Start-up waits for GET /models (ENGINE_READY_TIMEOUT_S). Each query is one streamed chat
completion, the prompt healer.model.inputs builds for transformers (the system turn, then the
image as a PNG data URL, then the question), all of a batch sent at once so that the server's
own continuous batching batches them. Each stream is read only until its row is done by the rule
MedGemmaEngine applies (healer.text.answer_step), then closed, which makes vLLM abort the request.
P(yes) and the answer mass come from the answer step's top-k logprobs (`read_step`); what the
top-k leaves unseen is reported as `unseen_mass`, never guessed. No torch here.
"""

import base64
import io
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import openai
from PIL import Image

from healer.errors import EngineStartError, EngineTimedOut, EngineUnavailable
from healer.model.engine import Compute, Engine, Generation, Listener, ModelInfo, Query, TokenLogprob
from healer.model.model_dir import read_source
from healer.settings import Settings
from healer.text.answer_step import ANSWER_WITHIN, explanation_complete, find_answer_step, token_label
from healer.text.prompts import SYSTEM_PROMPT

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # a host that drops packets fails in seconds, not after ENGINE_TIMEOUT_S
BACKSTOP_GRACE_S = 0.5  # past ENGINE_TIMEOUT_S, a batch is abandoned whatever its threads are doing
POLL_EVERY_S = 1.0
# Tokens that end the model's turn, should a server list them: nothing after them is the answer's.
END_OF_TURN = {"<end_of_turn>", "<eos>"}
# vLLM accepts connections on its port before it serves them: one readiness poll must not hang.
POLL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Step:
    """One generated token as the server streamed it."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]  # the step's top-k (token, logprob)
    text_before: str  # what the tokens before it decode to


@dataclass(frozen=True)
class StepReading:
    p_yes: float
    answer_mass: float
    unseen_mass: float


def read_step(step: Step) -> StepReading:
    """P(yes), the answer mass and the unseen mass at one step, from its top-k logprobs.

    The top-k are the k most likely tokens, so a label none of them carries has at most the
    smallest listed probability: P(yes) uses that bound for it (0 would invent certainty). The
    answer mass counts listed tokens only, a lower bound of the true mass."""
    listed = list(step.top)
    if (step.token, step.logprob) not in listed:  # a server that lists the chosen token apart
        listed.append((step.token, step.logprob))
    unseen = min(1.0, max(0.0, 1.0 - sum(math.exp(logprob) for _, logprob in listed)))
    floor = min(logprob for _, logprob in listed)
    yes = [logprob for token, logprob in listed if token_label(token) == "yes"]
    no = [logprob for token, logprob in listed if token_label(token) == "no"]
    mass = min(1.0, sum(math.exp(logprob) for logprob in yes + no))
    log_odds = _logsumexp(yes or [floor]) - _logsumexp(no or [floor])
    return StepReading(_sigmoid(log_odds), mass, unseen)


def without_credentials(url: str) -> str:
    """The URL as it may be shown and logged: no user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


class OpenAIEngine(Engine):
    def __init__(self, client: openai.OpenAI, url: str, model: str, info: ModelInfo, settings: Settings):
        self.client = client
        self.url = url  # without credentials: the one shown in logs and errors
        self.model = model
        self.info = info
        self.max_new_tokens = settings.max_new_tokens
        self.top_logprobs = settings.engine_top_logprobs
        self.timeout_s = settings.engine_timeout_s
        self._headers = _auth_headers(settings)

    @classmethod
    def load(cls, settings: Settings) -> "OpenAIEngine":
        url = without_credentials(settings.engine_url or "")
        # Without ENGINE_API_KEY the SDK still wants one; `_auth_headers` keeps it from being sent.
        key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else "unused"
        client = openai.OpenAI(
            base_url=settings.engine_url, api_key=key,
            max_retries=0,  # no hidden retries, each restarting the answer's time: a 503 lets the client choose
            timeout=openai.Timeout(settings.engine_timeout_s, connect=min(CONNECT_TIMEOUT_S, settings.engine_timeout_s)),
        )
        served = wait_until_ready(client, url, _auth_headers(settings), settings.engine_ready_timeout_s)
        model = settings.engine_model or served[0]
        if model not in served:
            raise EngineStartError(f"ENGINE_MODEL={model} is not served by the engine at {url} "
                                   f"(it serves: {', '.join(served)})")
        log.info("engine: OpenAI-compatible server at %s, model %s", url, model)
        return cls(client, url, model, _model_info(model, url), settings)

    def generate(self, queries: Sequence[Query]) -> list[Generation]:
        """Every query at once, each on a daemon thread: the interpreter does not wait for those at
        exit, so a SIGTERM during the warm-up still ends the process at once (healer.api.signals)."""
        deadline = time.monotonic() + self.timeout_s
        results: list[Generation | BaseException | None] = [None] * len(queries)

        def ask(row: int, query: Query) -> None:
            try:
                results[row] = self._ask(query, deadline)
            except BaseException as error:  # re-raised on the caller's thread below
                results[row] = error

        threads = [threading.Thread(target=ask, args=(row, query), name="healer-engine", daemon=True)
                   for row, query in enumerate(queries)]
        for thread in threads:
            thread.start()
        for thread in threads:  # a backstop: each thread's own timeouts, which say which error it was, come first
            thread.join(max(0.0, deadline + BACKSTOP_GRACE_S - time.monotonic()))
        if any(thread.is_alive() for thread in threads):  # they close their streams at their next token
            raise self._timed_out()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    def _ask(self, query: Query, deadline: float) -> Generation:
        started = time.perf_counter()
        image_url = _png_data_url(query.image)
        prepared = time.perf_counter()
        limit = self.max_new_tokens if query.explain else ANSWER_WITHIN
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=_messages(image_url, query.question), stream=True,
                temperature=0, max_tokens=limit, logprobs=True, top_logprobs=self.top_logprobs,
                extra_headers=self._headers,
            )
            with stream:  # leaving it closes the connection: the server stops generating
                steps, text = self._read(stream, query.explain, limit, deadline, _Telling(query.listener))
        except openai.APITimeoutError:
            raise self._timed_out() from None
        except openai.APIStatusError as error:
            raise self._unavailable(f"it answered HTTP {error.status_code}") from None
        except openai.APIConnectionError:
            raise self._unavailable("the connection failed or dropped mid-answer") from None
        except openai.APIError:
            raise self._unavailable("it reported an error mid-answer") from None
        step = _answer_step(steps)
        # No answer step: P(yes) is read at the first step, and the mass reported is 0.
        reading = read_step(steps[step or 0]) if steps else StepReading(0.5, 0.0, 1.0)
        return Generation(
            text=text.strip() if query.explain else "",
            p_yes=reading.p_yes,
            answer_label=None if step is None else token_label(steps[step].token),
            answer_mass=0.0 if step is None else reading.answer_mass,
            answer_step=step,
            timings_ms={"preprocess": round((prepared - started) * 1000, 1),
                        "model": round((time.perf_counter() - prepared) * 1000, 1)},
            unseen_mass=reading.unseen_mass,
            logprobs=None if query.top_logprobs is None else tuple(
                TokenLogprob(s.token, s.logprob, s.top[: query.top_logprobs]) for s in steps),
        )

    def _read(self, stream, explain: bool, limit: int, deadline: float, telling: "_Telling") -> tuple[list[Step], str]:
        """The row's tokens and text, read token by token until it is done: an explained row at
        its answer and one finished sentence, an answer-only row at its answer step (or `limit`
        tokens), a streamed row also once its listener is cancelled. A chunk may carry many tokens
        (vLLM's CPU build sends a dozen at once): the text ends at the token where the row was
        done, as transformers stops."""
        def done(steps: list[Step], text: str) -> bool:
            telling.tell(steps, text if explain else "")
            return (len(steps) >= limit or telling.cancelled
                    or (explanation_complete(text) if explain else _answer_step(steps) is not None))

        steps: list[Step] = []
        text = ""
        for chunk in stream:
            if time.monotonic() > deadline:
                raise self._timed_out()
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            tokens = (choice.logprobs.content if choice.logprobs else None) or []
            if choice.delta.content and not tokens:
                raise self._unavailable(f"it streamed text without logprobs (it must allow {self.top_logprobs} "
                                        "top logprobs: ENGINE_TOP_LOGPROBS, vLLM's --max-logprobs)")
            content = choice.delta.content or ""
            # Token strings that spell the chunk's text can end the row mid-chunk; others (a byte
            # of a multi-byte character, shown as its own string) only with the chunk's whole text.
            exact = "".join(token.token for token in tokens) == content
            before = text
            for token in tokens:
                if token.token in END_OF_TURN:
                    return steps, text
                top = tuple((alternative.token, alternative.logprob) for alternative in token.top_logprobs or ())
                steps.append(Step(token.token, token.logprob, top, before))
                before += token.token
                if exact:
                    text = before
                    if done(steps, text):
                        return steps, text
            if not exact:
                text += content
                if done(steps, text):
                    return steps, text
        return steps, text

    def _unavailable(self, reason: str) -> EngineUnavailable:
        log.warning("engine at %s: %s", self.url, reason)
        return EngineUnavailable(self.url, reason)

    def _timed_out(self) -> EngineTimedOut:
        log.warning("engine at %s: no answer within %g s (ENGINE_TIMEOUT_S)", self.url, self.timeout_s)
        return EngineTimedOut(self.url, self.timeout_s)

    def warmup(self) -> None:
        """One answer-only answer on a blank tile, as MedGemmaEngine's: the first user waits for
        nothing the server initialises lazily."""
        self.generate([Query(Image.new("RGB", (64, 64), "white"), "Warm-up.", explain=False)])


class _Telling:
    """A streamed row's listener, told what the tokens read so far say: the answer step's reading
    once, then the text as it grows. Without a listener, it tells nobody."""

    def __init__(self, listener: Listener | None):
        self.listener = listener
        self.answered = False

    @property
    def cancelled(self) -> bool:
        return self.listener is not None and self.listener.cancelled

    def tell(self, steps: list[Step], text: str) -> None:
        if self.listener is None:
            return
        if not self.answered and (step := _answer_step(steps)) is not None:
            self.answered = True
            reading = read_step(steps[step])
            self.listener.answered(Generation(text="", p_yes=reading.p_yes, answer_label=token_label(steps[step].token),
                                              answer_mass=reading.answer_mass, answer_step=step,
                                              unseen_mass=reading.unseen_mass))
        if text:
            self.listener.wrote(text)


def wait_until_ready(client: openai.OpenAI, url: str, headers: dict, deadline_s: float) -> list[str]:
    """The ids GET /models lists, once the server answers with at least one; EngineStartError
    at once when it refuses Healer or is no OpenAI base URL, and when `deadline_s` has passed."""
    log.info("waiting up to %g s for the engine at %s (ENGINE_READY_TIMEOUT_S)", deadline_s, url)
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while True:
        try:
            timeout = max(0.1, min(POLL_TIMEOUT_S, deadline - time.monotonic()))
            served = [model.id for model in client.models.list(extra_headers=headers, timeout=timeout).data]
            if served:
                return served
            last = "it lists no model yet"
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise EngineStartError(f"the engine at {url} refuses Healer (HTTP {error.status_code}): "
                                   "check ENGINE_API_KEY") from None
        except openai.NotFoundError:
            raise EngineStartError(f"the engine at {url} has no /models (HTTP 404): ENGINE_URL must be "
                                   "the OpenAI base URL, e.g. http://host:8000/v1") from None
        except openai.APIStatusError as error:
            last = f"HTTP {error.status_code}"
        except openai.APITimeoutError:
            last = f"no answer within {POLL_TIMEOUT_S:g} s"
        except openai.APIConnectionError:
            last = "connection failed"
        except openai.APIError:
            last = "an answer that is not an OpenAI model list"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EngineStartError(f"the engine at {url} was not ready within {deadline_s:g} s "
                                   f"(ENGINE_READY_TIMEOUT_S); last poll of GET /models: {last}")
        time.sleep(min(POLL_EVERY_S, remaining))


def _auth_headers(settings: Settings) -> dict:
    """Without ENGINE_API_KEY, no Authorization header at all (nor OPENAI_API_KEY's, which the SDK reads)."""
    return {} if settings.engine_api_key else {"Authorization": openai.omit}


def _answer_step(steps: Sequence[Step]) -> int | None:
    return find_answer_step([token_label(step.token) for step in steps], lambda index: steps[index].text_before)


def _messages(image_url: str, question: str) -> list[dict]:
    """healer.model.inputs' prompt: the system turn, then the image, then the question."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                     {"type": "text", "text": question}]},
    ]


def _png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _model_info(model: str, url: str) -> ModelInfo:
    """The served model: a local directory (vLLM's --model DIR) says where its weights came from
    and whether they are the demo's in healer-model.json; any other id is reported as it is."""
    source = read_source(Path(model), model, None)  # no healer-model.json there: the id, not a demo
    compute = Compute(processor=url, cpu_class=None, kernels={"engine": f"OpenAI-compatible server at {url}"})
    return ModelInfo(source.id, source.revision, "remote", "engine's own", source.demo, compute=compute, engine="vllm")


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(value - top) for value in values))


def _sigmoid(log_odds: float) -> float:
    """In float64, as MedGemmaEngine's: confident answers stay distinct up to a gap of ~36."""
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(log_odds)
    return odds / (1.0 + odds)
