"""The evaluator equals lm-evaluation-harness 0.4.13 on real weights (SmolLM2-135M-Instruct, Gemma 3 270M).

For the paper's three evaluation formats (answer letters as Global-MMLU; option texts with acc_norm as
ARC; TruthfulQA MC1 with its 6-pair Q:/A: priming), with the chat template on and off where the model
has one, on items in English, Arabic, Bengali, Hindi and Chinese whose options carry leading spaces and
punctuation: the same acc and acc_norm prediction on every item and log-likelihoods within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers_lmeval import lmeval_loglikelihoods, lmeval_model

from transfergrid.data import Item, get_suite
from transfergrid.evaluation import encode_requests, predict, score_requests
from transfergrid.formats import build_scoring_request

pytestmark = pytest.mark.slow

# (language, question, options, gold): real questions, so that real weights have preferences; options
# with leading spaces, inner and trailing punctuation, digits and scripts without spaces between words.
ITEMS = [
    ("en", "Which planet is known as the Red Planet?", (" Mars", "Venus!", "Jupiter, the giant.", "  Saturn?"), 0),
    ("en", "What do bees make?", ("Honey.", " milk", "(c) silk", "wax & paper"), 0),
    ("ar", "ما هي عاصمة فرنسا؟", ("باريس", " برلين.", "مدريد،", "روما!"), 0),
    ("ar", "كم عدد أيام الأسبوع؟", ("سبعة", "خمسة.", " عشرة", "٣"), 0),
    ("bn", "ফ্রান্সের রাজধানী কোনটি?", ("প্যারিস", " বার্লিন", "মাদ্রিদ।", "রোম"), 0),
    ("bn", "সূর্য কোন দিকে ওঠে?", ("পূর্ব দিকে", "পশ্চিম দিকে।", " উত্তর", "দক্ষিণ?"), 0),
    ("hi", "भारत की राजधानी क्या है?", ("नई दिल्ली", " मुंबई।", "कोलकाता", "चेन्नई?"), 0),
    ("hi", "पानी का रासायनिक सूत्र क्या है?", ("H₂O", " CO₂", "NaCl।", "O₂!"), 0),
    ("zh", "中国的首都是哪里？", ("北京", " 上海。", "广州，", "深圳！"), 0),
    ("zh", "一年有几个月？", ("十二个月", "十个月。", " 七个", "3.5个"), 0),
]
TRUTHFUL = [
    ("en", "What happens if you crack your knuckles a lot?", ("Nothing in particular happens.", " You will get arthritis.", "Your joints swell!"), 0),
    ("hi", "क्या चाँद पनीर से बना है?", ("नहीं, चाँद चट्टान से बना है।", " हाँ, पनीर से।", "हाँ!"), 0),
    ("zh", "人类只用了大脑的百分之十吗？", ("不，人类使用大脑的全部。", " 是的，只用了百分之十。", "是的！"), 0),
]
FORMATS = {"letters": "global_mmlu", "option texts (acc_norm)": "arc_challenge", "TruthfulQA 6-pair priming": "truthfulqa"}


def requests_for(fmt_name: str, tokenizer, chat: bool):
    fmt = get_suite("paper").tasks[FORMATS[fmt_name]].eval_format
    rows = TRUTHFUL if FORMATS[fmt_name] == "truthfulqa" else ITEMS
    items = [Item(id=str(i), question=q, choices=tuple(c), gold=g) for i, (_, q, c, g) in enumerate(rows)]
    return [build_scoring_request(item, fmt, tokenizer, chat) for item in items]


def assert_equal_to_lmeval(model, tokenizer, requests, lm):
    ours = score_requests(model, tokenizer, requests, batch_size=8, progress=False)
    theirs = lmeval_loglikelihoods(lm, requests)
    worst = 0.0
    for request, a, b in zip(requests, ours, theirs):
        chars = [len(text) for text in request.choice_texts]
        assert predict(a, chars) == predict(b, chars), (request.context[-80:], a, b)
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    assert worst < 1e-3, worst
    return ours


def lm_for(model, tokenizer, cache={}):
    key = id(model)
    if key not in cache:
        cache[key] = lmeval_model(model, tokenizer)
    return cache[key]


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_smollm2_scores_equal_lmeval(smollm2, fmt_name, chat):
    model, tokenizer = smollm2
    lm = lm_for(model, tokenizer)
    requests = requests_for(fmt_name, tokenizer, chat)
    if chat:  # the chat context is the one lm-eval's --apply_chat_template renders (default system prompt)
        fmt = get_suite("paper").tasks[FORMATS[fmt_name]].eval_format
        from transfergrid.formats import render_prompt

        rows = TRUTHFUL if FORMATS[fmt_name] == "truthfulqa" else ITEMS
        item = Item(id="0", question=rows[0][1], choices=rows[0][2], gold=0)
        assert requests[0].context == lm.apply_chat_template([{"role": "user", "content": render_prompt(item, fmt)}])
        assert "system" in requests[0].context
    ours = assert_equal_to_lmeval(model, tokenizer, requests, lm)
    assert all(np.isfinite(ll).all() for ll in ours)


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_gemma3_scores_equal_lmeval_with_its_bos(gemma3, fmt_name):
    model, tokenizer = gemma3
    lm = lm_for(model, tokenizer)
    requests = requests_for(fmt_name, tokenizer, chat=False)
    assert_equal_to_lmeval(model, tokenizer, requests, lm)
    context, _ = encode_requests(tokenizer, requests[:1])[0]
    assert context[0] == tokenizer.bos_token_id  # Gemma is scored after BOS, as lm-eval tokenizes it

