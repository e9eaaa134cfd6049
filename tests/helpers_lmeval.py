"""lm-evaluation-harness 0.4.13 as the reference scorer, driven as its `multiple_choice` tasks drive it.

`HFLM(pretrained=<model object>).loglikelihood` on the same (context, continuation) pairs transfergrid
scores (as benchmarks/eval_vs_lmeval.py does). Tests that use it skip, saying so, without lm-eval.
"""

from __future__ import annotations

import logging

import pytest


def lmeval_or_skip():
    """The `lm_eval.models.huggingface` module, or skip the test naming the missing package."""
    return pytest.importorskip("lm_eval.models.huggingface", reason="lm-eval 0.4.13 is not installed (pip install -e '.[test]')")


def lmeval_model(model, tokenizer, batch_size: int = 16):
    """An `HFLM` around a loaded model object (no copy, CPU)."""
    huggingface = lmeval_or_skip()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return huggingface.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")


def lmeval_loglikelihoods(lm, requests) -> list[list[float]]:
    """Per request, lm-eval's log-likelihood of each continuation."""
    from lm_eval.api.instance import Instance

    instances = [
        Instance("loglikelihood", doc={}, arguments=(r.context, c), idx=i)
        for r in requests for i, c in enumerate(r.continuations)
    ]
    flat = iter(ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True))
    return [[next(flat) for _ in r.continuations] for r in requests]
