"""How a prompt is fed to llama.cpp batch by batch (fast, on a stand-in for the Llama object;
the real model is read and cancelled in test_llama.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from models.gpu import CPU_SETTINGS, GPU_SETTINGS, LoadSettings
from models.llama import LlamaGenerator


class FakeLlama:
    """The few attributes of llama_cpp.Llama that prompt reading uses."""

    def __init__(self, held: list[int], cuttable: bool = True) -> None:
        self.input_ids = np.zeros(64, dtype=np.intc)
        self.input_ids[: len(held)] = held
        self.n_tokens = len(held)
        self.n_batch = 4
        self.evals: list[list[int]] = []
        self.resets = 0
        self.cuts: list[int] = []
        self.clears = 0

        def kv_cache_seq_rm(seq: int, p0: int, p1: int) -> bool:
            self.cuts.append(p0)
            return cuttable

        def kv_cache_clear() -> None:
            self.clears += 1

        self._ctx = SimpleNamespace(kv_cache_seq_rm=kv_cache_seq_rm, kv_cache_clear=kv_cache_clear)

    def eval(self, tokens: list[int]) -> None:
        self.evals.append(list(tokens))
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)

    def reset(self) -> None:
        self.resets += 1
        self.n_tokens = 0


def generator(llm: FakeLlama, settings: LoadSettings | None = None) -> LlamaGenerator:
    gen = LlamaGenerator.__new__(LlamaGenerator)
    gen.llm = llm
    if settings is not None:
        gen.load_settings = settings
    return gen


def test_without_settings_the_cpu_behaviour_applies():
    assert generator(FakeLlama(held=[])).load_settings == CPU_SETTINGS


PROMPT = list(range(1, 11))


def test_the_common_prefix_is_kept_in_whole_batches_and_the_rest_read_in_batches():
    llm = FakeLlama(held=[1, 2, 3, 4, 5, 6, 99, 98])
    assert generator(llm)._read_prompt(PROMPT, lambda: False)
    # 6 tokens in common, but only the first whole batch (4) is kept: the rest is read in
    # the batches a first read makes, so its numbers are the same as a first read's
    assert llm.cuts == [4] and llm.resets == 0
    assert llm.evals == [[5, 6, 7, 8], [9, 10]]
    assert llm.input_ids[: llm.n_tokens].tolist() == PROMPT


def test_a_common_prefix_shorter_than_a_batch_is_read_again():
    llm = FakeLlama(held=[1, 2, 3, 99, 98])
    assert generator(llm)._read_prompt(PROMPT, lambda: False)
    assert llm.cuts == [0] and llm.evals == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_a_cache_that_cannot_be_cut_is_read_again_from_the_start():
    llm = FakeLlama(held=[1, 2, 3, 99], cuttable=False)
    assert generator(llm)._read_prompt(PROMPT, lambda: False)
    assert llm.resets == 1
    assert llm.evals == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_a_prompt_already_read_rereads_only_its_last_batch():
    llm = FakeLlama(held=PROMPT + [50, 51])  # the prompt and an earlier answer
    assert generator(llm)._read_prompt(PROMPT, lambda: False)
    assert llm.cuts == [8] and llm.evals == [[9, 10]]


def test_stop_is_asked_before_every_batch():
    llm = FakeLlama(held=[])
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) == 2

    assert not generator(llm)._read_prompt(PROMPT, stop)
    assert llm.evals == [[1, 2, 3, 4]] and llm.n_tokens == 4


# On a GPU (``reread_prompt``): the whole prompt, every call ------------------------------


def test_rereading_empties_the_context_and_reads_from_the_first_token():
    llm = FakeLlama(held=PROMPT + [50, 51])  # the same prompt and an earlier answer
    assert generator(llm, GPU_SETTINGS)._read_prompt(PROMPT, lambda: False)
    assert llm.resets == 1 and llm.clears == 1 and llm.cuts == []
    assert llm.evals == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert llm.input_ids[: llm.n_tokens].tolist() == PROMPT


def test_rereading_gives_the_same_batches_whatever_the_context_held():
    batches = []
    for held in ([], PROMPT[:3], PROMPT, [7, 7, 7]):
        llm = FakeLlama(held=held)
        assert generator(llm, GPU_SETTINGS)._read_prompt(PROMPT, lambda: False)
        batches.append(llm.evals)
    assert all(b == batches[0] for b in batches)


def test_rereading_still_asks_stop_before_every_batch():
    llm = FakeLlama(held=PROMPT)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) == 3

    assert not generator(llm, GPU_SETTINGS)._read_prompt(PROMPT, stop)
    assert llm.evals == [[1, 2, 3, 4], [5, 6, 7, 8]] and llm.n_tokens == 8
