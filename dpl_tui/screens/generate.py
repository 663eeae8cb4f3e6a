"""Generate the target review with a chosen method, token by token, beside the real
review when the target is held out (with ROUGE-1/ROUGE-L); regenerate; export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Label, Select, Static

from user_store.text import readable

from ..messages import GenerationEnded, TokensArrived
from ..palette import METHOD_HELP
from ..widgets.status import StatusBar
from ..widgets.step_progress import StepProgress
from ..widgets.text_view import TextView
from .base import EngineScreen, error_title
from .user import stars

if TYPE_CHECKING:
    from dpl_engine import GenerationResult

METHODS = list(METHOD_HELP)
FLUSH_EVERY_S = 1 / 20


def rouge_scores(generated: str, reference: str) -> dict[str, float]:
    """ROUGE-1 and ROUGE-L F1 of ``generated`` against ``reference`` (rouge-score, stemmed)."""
    from dpl_engine.evaluation.metrics import rouge

    rouge1, rouge_l = rouge(generated, reference)
    return {"rouge1": rouge1, "rougeL": rouge_l}


def run_generation(
    screen: GenerateScreen, method: str, refresh: bool, progress: Any, token: Any, run_id: int
) -> GenerationResult | None:
    from dpl_engine import ProgressEvent, ResultEvent, TokenEvent

    result = None
    engine = screen.dpl.engine()
    for event in engine.run(screen.target, method, cancel=token, refresh=refresh):  # type: ignore[arg-type]
        if isinstance(event, TokenEvent):
            screen.post_message(TokensArrived(run_id, event.text))
        elif isinstance(event, ProgressEvent):
            progress(event)
        elif isinstance(event, ResultEvent):
            result = event.result
            screen.post_message(GenerationEnded(run_id, result))
    return result


class GenerateScreen(EngineScreen):
    DOING = "generating"
    BINDINGS = [
        Binding("escape", "back", "Cancel / back"),
        Binding("r", "regenerate", "Regenerate"),
        Binding("R", "recompute", "Recompute all", key_display="shift+r"),
        Binding("m", "cycle_method", "Method"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self, target: Any, method: str | None = None) -> None:
        super().__init__(target)
        self.method = method
        self.result: GenerationResult | None = None
        self.tokens = 0
        self._pending: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="gen-controls"):
            yield Label("Method", classes="field-label")
            yield Select([(m, m) for m in METHODS], allow_blank=False, id="method")
            yield Static("", id="method-help", markup=False)
        yield Static("", id="gen-target", markup=False)
        yield StepProgress()
        with Horizontal(id="gen-body"):
            yield TextView("Generated", id="generated")
            yield TextView("Real review (held out)", id="real")
        yield Static("", id="gen-stats", markup=False)
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        t = self.target
        self.sub_title = f"Generate · {t.user_id} · {t.item.title}"
        method = self.method or self.dpl.settings.method
        if method not in METHODS:
            method = "dpl"
        self.method = method
        self.query_one("#method", Select).value = method
        self._describe_method()
        self.query_one("#gen-target", Static).update(
            Text.assemble(("Target: ", "bold"), t.item.title, f" · {stars(t.rating)} · ", t.title)
        )
        real = self.query_one("#real", TextView)
        if t.held_out is not None:
            real.set_text(
                Text.assemble(
                    (readable(t.held_out.title), "bold"),
                    "  ",
                    stars(t.held_out.rating),
                    "\n\n",
                    readable(t.held_out.text),
                )
            )
        else:
            real.display = False
        self.set_interval(FLUSH_EVERY_S, self._flush)
        self.generate()

    # -- running ---------------------------------------------------------------------
    def generate(self, refresh: bool = False) -> None:
        assert self.method is not None
        method = self.method
        self.result = None
        self.tokens = 0
        self._pending.clear()
        self.query_one("#generated", TextView).set_text("", title=f"Generated ({method})")
        self.query_one("#gen-stats", Static).update("")
        self.start(
            lambda progress, token, run_id: run_generation(
                self, method, refresh, progress, token, run_id
            )
        )

    def refresh_work(self, refresh: bool = False) -> None:
        self.generate(refresh=refresh)

    def action_regenerate(self) -> None:
        self.generate()

    def select_method(self, method: str) -> None:
        self.query_one("#method", Select).value = method
        self._describe_method()

    def action_cycle_method(self) -> None:
        current = self.method if self.method in METHODS else "dpl"
        self.select_method(METHODS[(METHODS.index(current) + 1) % len(METHODS)])

    @on(Select.Changed, "#method")
    def _method(self, event: Select.Changed) -> None:
        method = str(event.value)
        if method == self.method:
            return
        self.method = method
        self._describe_method()
        self.dpl.settings.method = method
        self.dpl.save_settings()
        self.query_one(StepProgress).message(f"Method {method}: press r to generate.")

    def _describe_method(self) -> None:
        help_text = METHOD_HELP.get(self.method or "", "")
        self.query_one("#method-help", Static).update(Text(help_text, style="italic"))

    def action_export(self) -> None:
        self.dpl.action_export()

    # -- streaming ---------------------------------------------------------------------
    @on(TokensArrived)
    def _tokens(self, message: TokensArrived) -> None:
        if self._current(message.run_id):
            self._pending.append(message.text)
            self.tokens += 1

    def _flush(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self.query_one("#generated", TextView).append(text)

    @on(GenerationEnded)
    def _ended(self, message: GenerationEnded) -> None:
        if not self._current(message.run_id):
            return
        self._pending.clear()
        result = message.result
        view = self.query_one("#generated", TextView)
        state = " — cancelled" if result.cancelled else ""
        view.set_text(result.text, title=f"Generated ({result.method}){state}")
        view.scroll_end(animate=False)
        self.result = result
        session = self.dpl.session
        if not result.cancelled and session is not None:
            session.results.append(result)
            if result.method == "dpl":
                session.differences = list(result.differences) or session.differences
                session.profile = result.profile or session.profile
                session.comparisons = list(result.comparisons) or session.comparisons
        self.query_one("#gen-stats", Static).update(self._stats_line(result))
        if not result.cancelled and self.target.held_out is not None and result.text.strip():
            self.score(result, self.target.held_out.text)

    def _stats_line(self, result: GenerationResult, scores: dict[str, float] | None = None) -> Text:
        line = Text()
        if scores:
            line.append(f"ROUGE-1 {scores['rouge1']:.3f} · ROUGE-L {scores['rougeL']:.3f}", "bold")
            line.append("   ")
        s = result.stats
        if s is not None:
            line.append(
                f"{s.completion_tokens} tokens · {s.tokens_per_s:.1f} tok/s · "
                f"finish: {s.finish_reason}"
            )
        line.append(f" · {result.llm_calls} LLM calls · model {result.model_id}")
        for note in result.notes:
            line.append(f"\nNote: {note}", "italic")
        return line

    @work(thread=True, exclusive=True, group="rouge", exit_on_error=False, description="scoring")
    def score(self, result: GenerationResult, reference: str) -> None:
        try:
            scores = rouge_scores(result.text, reference)
        except Exception as err:
            self.app.call_from_thread(
                self.notify,
                str(err),
                title=error_title(err, "computing ROUGE"),
                severity="error",
                markup=False,
            )
            return
        self.app.call_from_thread(self._scored, result, scores)

    def _scored(self, result: GenerationResult, scores: dict[str, float]) -> None:
        session = self.dpl.session
        if session is not None:
            for index, known in enumerate(session.results):
                if known is result:
                    session.scores[index] = scores
        if self.result is result:
            self.query_one("#gen-stats", Static).update(self._stats_line(result, scores))

    def show(self, value: GenerationResult | None) -> None:
        if value is None:
            self.query_one(StepProgress).message("The engine returned no result.")
            return
        self.query_one(StepProgress).message(
            f"Done: {value.method}, {len(value.text.split())} words. "
            "r regenerates, m changes the method."
        )
