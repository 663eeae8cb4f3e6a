"""How close a generated review is to the one the user really wrote.

The scores the paper reports, computed with the libraries the field uses so the
numbers are comparable: ROUGE-1 and ROUGE-L F1 (``rouge-score`` with Porter
stemming), METEOR (nltk, with WordNet 3.0 read from a folder), corpus BLEU
(``sacrebleu``, 0-100), and an optional LLM judge on the paper's 0-10 rubric.

METEOR needs WordNet. When it cannot be found METEOR is reported as unavailable
(None) with the reason, never as 0.

Beside these, ``paper_scores`` scores a corpus the way the published evaluation script
does through Hugging Face ``evaluate`` (without that package, and without downloading
anything): ROUGE without stemming, aggregated as rouge-score's bootstrap median of the
F1 scores; METEOR on nltk's word tokens; the same corpus BLEU. Only those numbers are
comparable with the paper's table.
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_WORDNET_DIRS = ("/usr/share/wordnet",)
"""Where a WordNet 3.0 database folder is looked for (Debian/Ubuntu ``wordnet-base``)."""

WORDNET_ENV = "DPL_WORDNET_DIR"

# WordNet's lexicographer files, in the order of their numbers (WordNet 3.0 ``lexnames``).
# nltk's reader wants this small index file; Debian's wordnet-base ships it only as a man
# page, so it is supplied from here when the folder lacks it.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_WORDNET_FILES = ("index.noun", "data.noun", "index.verb", "data.verb", "index.adj", "data.adj")

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_lock = threading.Lock()


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, for METEOR."""
    return _TOKEN.findall(text.lower())


# -- ROUGE and BLEU ---------------------------------------------------------------
@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    import logging

    # rouge-score logs through absl when it sets up, which gives Python's root logger a
    # stderr handler as a side effect; other libraries' debug records then reach the
    # terminal. Set it up here and put the root logger back as it was.
    root = logging.getLogger()
    before = list(root.handlers)
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scorer.score("warm up", "warm up")
    for handler in root.handlers:
        if handler not in before:
            root.removeHandler(handler)
    return scorer


def rouge(prediction: str, reference: str) -> tuple[float, float]:
    """(ROUGE-1 F1, ROUGE-L F1) of one pair, 0..1, with Porter stemming."""
    scores = _rouge_scorer().score(reference, prediction)
    return scores["rouge1"].fmeasure, scores["rougeL"].fmeasure


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (0..100) with its default 13a tokenizer, one reference each."""
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


# -- METEOR -----------------------------------------------------------------------
@dataclass(frozen=True)
class WordNetStatus:
    path: str | None
    """The folder WordNet was read from, or None when none was usable."""
    message: str
    """Where it was found, or why METEOR is unavailable and how to fix it."""

    @property
    def available(self) -> bool:
        return self.path is not None


def _candidate_dirs() -> list[Path]:
    explicit = os.environ.get(WORDNET_ENV)
    if explicit:
        return [Path(explicit).expanduser()]
    return [Path(p) for p in DEFAULT_WORDNET_DIRS]


def _looks_like_wordnet(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _WORDNET_FILES)


def wordnet_status() -> WordNetStatus:
    """Where WordNet 3.0 is, or why it is not usable (nothing is loaded)."""
    for folder in _candidate_dirs():
        if _looks_like_wordnet(folder):
            return WordNetStatus(str(folder), f"WordNet read from {str(folder)!r}")
    where = ", ".join(repr(str(p)) for p in _candidate_dirs())
    return WordNetStatus(
        None,
        f"METEOR unavailable: no WordNet 3.0 database (index.noun, data.noun, ...) in {where}. "
        f"Install it (Debian/Ubuntu: `apt install wordnet-base`) or set {WORDNET_ENV} "
        "to a folder holding the WordNet dict files.",
    )


def _lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES)
    )


@lru_cache(maxsize=4)
def _wordnet_reader(folder: str) -> Any:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _FolderWordNet(WordNetCorpusReader):
        """WordNet from a plain dict folder; supplies ``lexnames`` when the folder lacks it."""

        def open(self, file: str) -> Any:  # noqa: A003 - nltk's name
            if file == "lexnames" and not (Path(folder) / "lexnames").exists():
                return io.StringIO(_lexnames_text())
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            # Maps other WordNet versions onto this one for multilingual data; unused here,
            # and it would look for nltk's own WordNet download.
            return None

    # nltk only reads corpora below the folders on its data path.
    if folder not in nltk.data.path:
        nltk.data.path.append(folder)
    with warnings.catch_warnings():
        # No Open Multilingual Wordnet: METEOR uses the English synsets only.
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return _FolderWordNet(folder, None)


def meteor(prediction: str, reference: str, *, wordnet: Any = None) -> float | None:
    """METEOR of one pair (nltk defaults: alpha 0.9, beta 3, gamma 0.5), or None without WordNet."""
    from nltk.translate.meteor_score import meteor_score

    if wordnet is None:
        status = wordnet_status()
        if not status.available:
            return None
        wordnet = load_wordnet(status)
    with _lock:  # nltk's lazy WordNet caches are not thread-safe
        return float(meteor_score([tokenize(reference)], tokenize(prediction), wordnet=wordnet))


def load_wordnet(status: WordNetStatus | None = None) -> Any | None:
    """The WordNet reader METEOR uses, or None when WordNet is unavailable."""
    status = status or wordnet_status()
    if status.path is None:
        return None
    return _wordnet_reader(status.path)


# -- one pair, and a corpus ------------------------------------------------------
@dataclass(frozen=True)
class PairScores:
    rouge1: float
    rougeL: float  # noqa: N815 - the metric's name
    meteor: float | None
    """None when WordNet is unavailable."""


def score_pair(prediction: str, reference: str, *, wordnet: Any = None) -> PairScores:
    r1, rl = rouge(prediction, reference)
    met = None if wordnet is None else meteor(prediction, reference, wordnet=wordnet)
    return PairScores(rouge1=r1, rougeL=rl, meteor=met)


@dataclass(frozen=True)
class CorpusScores:
    n: int
    rouge1: float
    rougeL: float  # noqa: N815
    meteor: float | None
    bleu: float
    """0..100"""


def score_corpus(
    predictions: Sequence[str], references: Sequence[str], *, wordnet: Any = None
) -> CorpusScores:
    """Mean per-pair ROUGE and METEOR, corpus BLEU: the way the paper aggregates them."""
    pairs = [
        score_pair(p, r, wordnet=wordnet) for p, r in zip(predictions, references, strict=True)
    ]
    return aggregate_pairs(pairs, predictions, references)


def aggregate_pairs(
    pairs: Sequence[PairScores], predictions: Sequence[str], references: Sequence[str]
) -> CorpusScores:
    n = len(pairs)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    meteors = [p.meteor for p in pairs]
    return CorpusScores(
        n=n,
        rouge1=mean([p.rouge1 for p in pairs]),
        rougeL=mean([p.rougeL for p in pairs]),
        meteor=None if any(m is None for m in meteors) or not n else mean(meteors),  # type: ignore[arg-type]
        bleu=corpus_bleu(predictions, references),
    )


# -- as the published evaluation scores them ------------------------------------------
PAPER_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
"""What ``evaluate``'s rouge scores by default, in its order: the bootstrap draws for
ROUGE-L come after those for ROUGE-1 and ROUGE-2 from one random stream."""

PAPER_BOOTSTRAP_SEED = 42
"""The published script seeds every generator with 42 before it scores; seeding the
bootstrap also makes a report reproducible."""

_bootstrap_lock = threading.Lock()


@lru_cache(maxsize=1)
def _unstemmed_scorer() -> Any:
    _rouge_scorer()  # sets rouge-score up once, keeping the root logger as it was
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(PAPER_ROUGE_TYPES), use_stemmer=False)


def paper_rouge(
    predictions: Sequence[str], references: Sequence[str], *, seed: int = PAPER_BOOTSTRAP_SEED
) -> tuple[float, float]:
    """(ROUGE-1, ROUGE-L) of a corpus as ``evaluate``'s rouge gives them by default.

    Each pair is scored without stemming; rouge-score's ``BootstrapAggregator`` then
    resamples the pairs 1,000 times and reports the median of the resampled mean F1
    ("mid"). It draws from numpy's global generator, which is seeded with ``seed`` for the
    call and put back as it was afterwards."""
    from rouge_score.scoring import BootstrapAggregator

    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not predictions:
        return 0.0, 0.0
    import numpy as np

    scorer = _unstemmed_scorer()
    aggregator = BootstrapAggregator()
    for prediction, reference in zip(predictions, references, strict=True):
        aggregator.add_scores(scorer.score(reference, prediction))
    with _bootstrap_lock:
        saved = np.random.get_state()
        np.random.seed(seed)
        try:
            result = aggregator.aggregate()
        finally:
            np.random.set_state(saved)
    return float(result["rouge1"].mid.fmeasure), float(result["rougeL"].mid.fmeasure)


@dataclass(frozen=True)
class WordTokens:
    """nltk's ``word_tokenize``, with its English sentence model when nltk finds one locally."""

    punkt_model: bool
    """False: nltk's English Punkt model is not installed, and the sentences are split by an
    untrained Punkt splitter instead (nothing is ever downloaded)."""

    @property
    def note(self) -> str:
        if self.punkt_model:
            return "METEOR (as published) on nltk's word_tokenize with its English Punkt model"
        return (
            "METEOR (as published) on nltk's word tokens, sentences split by an untrained "
            "Punkt splitter: nltk's English Punkt model is not installed (with it, tokens "
            "differ only at abbreviations, initials and numbers that end in a period)"
        )

    def __call__(self, text: str) -> list[str]:
        from nltk.tokenize import word_tokenize

        if self.punkt_model:
            return word_tokenize(text)
        sentences, words = _plain_tokenizers()
        # word_tokenize's own steps, with the untrained splitter in place of the model.
        return [t for sentence in sentences.tokenize(text) for t in words.tokenize(sentence)]


@lru_cache(maxsize=1)
def _plain_tokenizers() -> tuple[Any, Any]:
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


@lru_cache(maxsize=1)
def word_tokens() -> WordTokens:
    """The tokenizer the published METEOR runs on, as far as this machine has it."""
    from nltk.tokenize import punkt_model_available

    return WordTokens(punkt_model=punkt_model_available("english"))


def paper_meteor(prediction: str, reference: str, *, wordnet: Any) -> float:
    """METEOR of one pair as ``evaluate``'s meteor computes it: nltk's ``meteor_score``
    (alpha 0.9, beta 3, gamma 0.5) on nltk word tokens, which it lower-cases itself."""
    from nltk.translate.meteor_score import meteor_score

    tokens = word_tokens()
    with _lock:  # nltk's lazy WordNet caches are not thread-safe
        return float(
            meteor_score(
                [tokens(reference)],
                tokens(prediction),
                wordnet=wordnet,
                alpha=0.9,
                beta=3.0,
                gamma=0.5,
            )
        )


@dataclass(frozen=True)
class PaperScores:
    """One corpus scored as the published evaluation script scores it."""

    rouge1: float
    rougeL: float  # noqa: N815
    meteor: float | None
    """Mean over pairs; None without WordNet."""
    bleu: float
    """0..100, the same corpus BLEU as ``corpus_bleu``."""


def paper_scores(
    predictions: Sequence[str], references: Sequence[str], *, wordnet: Any = None
) -> PaperScores:
    """ROUGE, METEOR and BLEU of a corpus the way the paper's numbers were computed."""
    r1, rl = paper_rouge(predictions, references)
    meteor_value = None
    if wordnet is not None and predictions:
        values = [
            paper_meteor(p, r, wordnet=wordnet)
            for p, r in zip(predictions, references, strict=True)
        ]
        meteor_value = sum(values) / len(values)
    return PaperScores(
        rouge1=r1, rougeL=rl, meteor=meteor_value, bleu=corpus_bleu(predictions, references)
    )


# -- LLM as judge -------------------------------------------------------------------
JUDGE_VERSION = "judge-v1"

_JUDGE_SYSTEM = (
    "You grade how well a generated product review reproduces a real review written by the "
    "same person. Compare them on three things: the content (what is said about the product), "
    "the key points (the reasons, likes and complaints), and the personal thoughts (the "
    "writer's own opinions, feelings and experiences). Give one whole number from 0 to 10: "
    "0 means nothing in common, 5 means about half of the content, key points and personal "
    "thoughts match, 10 means they match completely. Reply with the line `Score: N` and "
    "nothing else."
)

_SCORE = re.compile(r"score\s*[:=]?\s*(\d{1,2}(?:\.\d+)?)", re.IGNORECASE)
_BARE = re.compile(r"^\s*(\d{1,2}(?:\.\d+)?)\s*(?:/\s*10)?\s*\.?\s*$")


def judge_messages(item_title: str, reference: str, generated: str) -> list[dict[str, str]]:
    user = (
        f"Product: {item_title}\n\n"
        f"Real review:\n{reference.strip()}\n\n"
        f"Generated review:\n{generated.strip() or '(empty)'}\n\n"
        "How closely does the generated review match the real one? Reply `Score: N` (0-10)."
    )
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_judge(text: str) -> float | None:
    """The judge's 0-10 score divided by 10, or None when the reply holds no valid score."""
    match = _SCORE.search(text) or _BARE.match(text)
    if match is None:
        return None
    value = float(match.group(1))
    if not 0 <= value <= 10:
        return None
    return value / 10


@dataclass(frozen=True)
class JudgeScore:
    score: float | None
    """0..1 (the 0-10 rubric divided by 10); None when the reply could not be parsed."""
    raw: str


def judge(
    generator: Any, item_title: str, reference: str, generated: str, *, seed: int = 0
) -> JudgeScore:
    """Ask ``generator`` (a ``models.TextGenerator``) to grade one generated review."""
    from models import SamplingParams

    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=12, seed=seed)
    text, _ = generator.complete(judge_messages(item_title, reference, generated), params)
    return JudgeScore(score=parse_judge(text), raw=text)
