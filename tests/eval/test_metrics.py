"""The metric functions against the reference libraries and hand-worked values."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpl_engine.evaluation import metrics

IDENTICAL = "These strings sound bright and stay in tune for weeks."
DISJOINT = ("alpha beta gamma", "delta epsilon zeta")


@pytest.fixture(scope="module")
def wordnet():
    status = metrics.wordnet_status()
    assert status.available, status.message  # Debian wordnet-base is part of the environment
    return metrics.load_wordnet(status)


def test_rouge_identical_disjoint_and_a_pair_worked_by_hand():
    from rouge_score import rouge_scorer

    assert metrics.rouge(IDENTICAL, IDENTICAL) == (1.0, 1.0)
    assert metrics.rouge(*DISJOINT) == (0.0, 0.0)
    # Stemming maps "cats" to "cat": 5 of 6 unigrams match each way, so F1 = 5/6. The longest
    # common subsequence is "the cat sat on mat" (5 tokens) as well.
    r1, rl = metrics.rouge("the cat sat on the mat", "the cats sat on a mat")
    assert r1 == pytest.approx(5 / 6) and rl == pytest.approx(5 / 6)
    # Same numbers as the library called directly with stemming (argument order: target first).
    pred, ref = "Great little tuner, clips on fast.", "A great tuner that clips on quickly."
    direct = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(ref, pred)
    assert metrics.rouge(pred, ref) == (direct["rouge1"].fmeasure, direct["rougeL"].fmeasure)


def test_meteor_against_nltk_and_by_hand(wordnet):
    from nltk.translate.meteor_score import meteor_score

    # Identical texts of 11 tokens: one chunk, so the penalty is 0.5 * (1/11)^3.
    tokens = metrics.tokenize(IDENTICAL)
    assert len(tokens) == 11  # ten words and the full stop
    assert metrics.meteor(IDENTICAL, IDENTICAL, wordnet=wordnet) == pytest.approx(
        1 - 0.5 * (1 / 11) ** 3
    )
    assert metrics.meteor(*DISJOINT, wordnet=wordnet) == 0.0
    # "fast" and "quick" share a WordNet synset: all 3 words match in one chunk,
    # so the score is 1 - 0.5 * (1/3)^3.
    assert metrics.meteor("a fast car", "a quick car", wordnet=wordnet) == pytest.approx(
        1 - 0.5 / 27
    )
    pred, ref = "Great little tuner, clips on fast.", "A great tuner that clips on quickly."
    direct = meteor_score([metrics.tokenize(ref)], metrics.tokenize(pred), wordnet=wordnet)
    assert metrics.meteor(pred, ref, wordnet=wordnet) == direct


def test_meteor_is_unavailable_not_zero_without_wordnet(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(metrics.WORDNET_ENV, str(tmp_path))
    status = metrics.wordnet_status()
    assert not status.available
    assert "METEOR unavailable" in status.message and str(tmp_path) in status.message
    assert metrics.meteor(IDENTICAL, IDENTICAL) is None
    scores = metrics.score_corpus([IDENTICAL], [IDENTICAL], wordnet=metrics.load_wordnet(status))
    assert scores.meteor is None and scores.rouge1 == 1.0


def test_wordnet_folder_is_read_from_the_environment_variable(monkeypatch, wordnet):
    monkeypatch.setenv(metrics.WORDNET_ENV, "/usr/share/wordnet")
    status = metrics.wordnet_status()
    assert status.path == "/usr/share/wordnet"
    assert wordnet.get_version() == "3.0"


def test_corpus_bleu_matches_sacrebleu():
    import sacrebleu

    assert metrics.corpus_bleu([IDENTICAL], [IDENTICAL]) == pytest.approx(100.0)
    assert metrics.corpus_bleu([DISJOINT[0]], [DISJOINT[1]]) == 0.0
    preds = ["the cat sat on the mat today", "a great little tuner for the price"]
    refs = ["the cat sat on a mat today", "a great tuner for the money"]
    expected = sacrebleu.corpus_bleu(preds, [refs]).score
    assert metrics.corpus_bleu(preds, refs) == pytest.approx(expected)
    assert 0 < expected < 100
    with pytest.raises(ValueError):
        metrics.corpus_bleu(preds, refs[:1])


def test_score_corpus_means_pairs_and_pools_bleu(wordnet):
    preds = [IDENTICAL, DISJOINT[0]]
    refs = [IDENTICAL, DISJOINT[1]]
    s = metrics.score_corpus(preds, refs, wordnet=wordnet)
    assert s.n == 2
    assert s.rouge1 == pytest.approx(0.5) and s.rougeL == pytest.approx(0.5)
    assert s.meteor == pytest.approx((1 - 0.5 * (1 / 11) ** 3) / 2)
    assert s.bleu == pytest.approx(metrics.corpus_bleu(preds, refs))


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 7", 0.7),
        ("score = 10", 1.0),
        ("Score: 0", 0.0),
        ("8", 0.8),
        ("6/10", 0.6),
        ("Score: 7.5", 0.75),
        ("Score: 11", None),
        ("The reviews are similar.", None),
        ("", None),
    ],
)
def test_judge_replies_are_parsed_or_counted_as_failures(reply: str, score: float | None):
    assert metrics.parse_judge(reply) == (None if score is None else pytest.approx(score))


def test_judge_prompt_carries_both_reviews_and_the_rubric():
    messages = metrics.judge_messages("Tuner", "The real one.", "The generated one.")
    text = "\n".join(m["content"] for m in messages)
    for part in ("The real one.", "The generated one.", "0 to 10", "personal thoughts", "Tuner"):
        assert part in text


def test_scoring_leaves_the_root_logger_alone():
    """rouge-score's absl logging would give the root logger a handler, and the engine's BM25
    library logs at debug level: the terminal would fill with its records."""
    import subprocess
    import sys

    code = (
        "import logging\n"
        "from dpl_engine.evaluation import metrics\n"
        "metrics.rouge('a b', 'a c')\n"
        "print(len(logging.getLogger().handlers))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


# -- as the published evaluation scores them ----------------------------------------------
def test_paper_rouge_does_not_stem_and_takes_the_bootstrap_median():
    # Unstemmed, "cats" is not "cat": 4 of 6 unigrams match each way (the, sat, on, mat), and
    # the longest common subsequence is those four, so both F1 are 2/3 (stemmed: 5/6). With one
    # pair every resample is that pair, so the median is its score.
    assert metrics.paper_rouge(["the cat sat on the mat"], ["the cats sat on a mat"]) == (
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
    )
    # Identical (1) and disjoint (0): a resample's mean is 0, 1/2 or 1 with chances 1/4, 1/2,
    # 1/4, so the median of 1,000 of them is 1/2.
    assert metrics.paper_rouge([IDENTICAL, DISJOINT[0]], [IDENTICAL, DISJOINT[1]]) == (0.5, 0.5)
    # Four pairs: F1 1, 0, 2/3 ("x y" against "x": P 1/2, R 1) and 1/4 ("a" against seven
    # words: P 1, R 1/7); their resampled means centre on the mean, 23/48.
    preds, refs = ["a b c", "x y", "x y", "a"], ["a b c", "p q", "x", "a b c d e f g"]
    assert metrics.paper_rouge(preds, refs) == (pytest.approx(23 / 48), pytest.approx(23 / 48))
    assert metrics.paper_rouge([], []) == (0.0, 0.0)
    with pytest.raises(ValueError):
        metrics.paper_rouge(preds, refs[:1])


def test_paper_rouge_is_rouge_scores_aggregator_seeded_and_leaves_numpys_generator_alone():
    import numpy as np
    from rouge_score import rouge_scorer, scoring

    preds = ["Great little tuner, clips on fast.", "Loud pedal.", "Strings went dead in a week"]
    refs = ["A great tuner that clips on quickly.", "The pedal hums.", "Dead strings after a week"]
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    found = metrics.paper_rouge(preds, refs)
    assert (np.random.get_state()[1] == before).all()

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"])
    aggregator = scoring.BootstrapAggregator()
    for p, r in zip(preds, refs, strict=True):
        aggregator.add_scores(scorer.score(r, p))
    np.random.seed(42)
    direct = aggregator.aggregate()
    assert found == (direct["rouge1"].mid.fmeasure, direct["rougeL"].mid.fmeasure)


def test_paper_meteor_tokenizes_as_nltk_does(wordnet):
    # nltk's word tokens: It, is, n't, loud, . (5); one chunk, so 1 - 0.5 * (1/5)^3.
    text = "It isn't loud."
    assert metrics.paper_meteor(text, text, wordnet=wordnet) == pytest.approx(1 - 0.5 / 125)
    # dpl's own tokens split "isn't" into isn, ', t: 6 tokens, 1 - 0.5 * (1/6)^3.
    assert metrics.meteor(text, text, wordnet=wordnet) == pytest.approx(1 - 0.5 / 216)
    # All four words match but in three chunks (the car | is | fast): the penalty is
    # 0.5 * (3/4)^3 on an F-mean of 1.
    found = metrics.paper_meteor("the car is fast", "fast is the car", wordnet=wordnet)
    assert found == pytest.approx(1 - 0.5 * 0.75**3)
    assert metrics.paper_meteor(*DISJOINT, wordnet=wordnet) == 0.0


def test_without_the_punkt_model_sentences_are_split_by_an_untrained_punkt():
    tokens = metrics.WordTokens(punkt_model=False)
    # A full stop inside the text ends a sentence and becomes a token of its own, as it does
    # with nltk's model; prices and contractions are split as nltk's word tokenizer splits them.
    assert tokens("Great tone. Works well, it isn't $5.99 cheap") == [
        "Great", "tone", ".", "Works", "well", ",", "it", "is", "n't", "$", "5.99", "cheap",
    ]  # fmt: skip
    assert "not installed" in tokens.note
    assert "English Punkt model" in metrics.WordTokens(punkt_model=True).note


def test_paper_scores_put_the_three_together(wordnet):
    preds = [IDENTICAL, "a fast car"]
    refs = [IDENTICAL, "a quick car"]
    s = metrics.paper_scores(preds, refs, wordnet=wordnet)
    assert (s.rouge1, s.rougeL) == metrics.paper_rouge(preds, refs)
    # IDENTICAL is 11 nltk tokens (ten words and the full stop); "fast" and "quick" share a
    # WordNet synset, so the second pair matches all 3 words in one chunk.
    assert s.meteor == pytest.approx(((1 - 0.5 / 11**3) + (1 - 0.5 / 27)) / 2)
    assert s.bleu == metrics.corpus_bleu(preds, refs)
    assert metrics.paper_scores(preds, refs).meteor is None  # no WordNet given
