"""Reduced precision on real weights: transfergrid's fast paths in bfloat16 (option texts packed, shared
prefixes run once) agree with a float32 reference at least as often as lm-eval 0.4.13 in bfloat16 does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers_lmeval import lmeval_loglikelihoods, lmeval_model
from test_real_eval import FORMATS, requests_for

from transfergrid.evaluation import predict, score_requests

pytestmark = pytest.mark.slow


def agreements(requests, got, reference) -> int:
    return sum(predict(a, [len(t) for t in r.choice_texts]) == predict(b, [len(t) for t in r.choice_texts])
               for r, a, b in zip(requests, got, reference))


def drift(got, reference) -> float:
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, reference))


def test_smollm2_bf16_fast_paths_agree_with_float32_as_often_as_lmeval_bf16(smollm2):
    model, tokenizer = smollm2
    half = copy.deepcopy(model).to(torch.bfloat16)
    lm_half = lmeval_model(half, tokenizer)
    requests = [r for name in FORMATS for r in requests_for(name, tokenizer, True)]  # chat: a shared system prompt
    reference = score_requests(model, tokenizer, requests, batch_size=8, progress=False)  # float32
    stats, exact_stats = {}, {}
    fast = score_requests(half, tokenizer, requests, batch_size=8, progress=False, stats=stats)
    exact = score_requests(half, tokenizer, requests, batch_size=8, progress=False, stats=exact_stats, exact=True)
    theirs = lmeval_loglikelihoods(lm_half, requests)
    assert stats["n_tokens"] < exact_stats["n_tokens"] / 2  # packed and shared in bf16, not one sequence per choice
    assert agreements(requests, fast, reference) >= agreements(requests, theirs, reference)
    # bf16 rounding of the weights and activations, not of the fast paths: as close as one sequence per choice
    assert drift(fast, reference) <= 1.5 * drift(exact, reference) + 0.05, (drift(fast, reference), drift(exact, reference))
