"""The reason rule on real law text: a provision with a heading is named by it, one without (California's code
sections) by its own operative words, quoted; the reason never names law beyond its answer's, and a training
answer carrying it still fits the budget's answer reserve."""

from __future__ import annotations

import json
import shutil

import pytest

from data_prep.extract import run_extract
from sft.core.contract import Answer, Label, render_completion
from sft.core.lawnames import LAW_MENTION
from sft.core.prompt import answer_reserve
from sft.core.reasons import needs_reason, provision_topic, short_title
from sft.inference.grounding import absent_law_mentions
from tests.conftest import CORPUS


@pytest.fixture(scope="module")
def provisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """citation -> chunk, from the bundled SB 976 PDF (as leginfo prints it) and the DSA text, through extract."""
    src = tmp_path_factory.mktemp("laws")
    for p in ("pdfs/CA_SB976_2024_leginfo_print.pdf", "laws/eu_dsa_2022_2065.txt", "laws/us_18usc2258a.txt"):
        shutil.copy(CORPUS / p, src)
    out = tmp_path_factory.mktemp("chunks") / "chunks.jsonl"
    run_extract(src, out, progress=False)
    chunks: dict[str, dict] = {}
    for line in out.read_text().splitlines():
        chunk = json.loads(line)
        chunks.setdefault(chunk["citation"], chunk)
    return chunks


def _fragments(topic: str) -> list[str]:
    quote = topic.split("“", 1)[1].rsplit("”", 1)[0]
    return [f.strip() for f in quote.split("…") if f.strip()]


def test_a_headed_provision_is_named_by_its_heading(provisions):
    assert provision_topic(provisions["DSA Art. 28(1)"]["snippet"]) == "online protection of minors"


def test_a_california_section_is_named_by_its_own_operative_words(provisions):
    """SB 976's sections carry no headings: the reason used to say "implements a legal requirement"."""
    notifications = provisions["Cal. Health & Saf. Code § 27002(a)"]["snippet"]
    assert provision_topic(notifications) == "the rule “unlawful for the operator … to send notifications to a user”"
    feed = provisions["Cal. Health & Saf. Code § 27001(a)"]["snippet"]
    assert provision_topic(feed) == "the rule “unlawful for the operator … to provide an addictive feed to a user”"
    assert provision_topic(provisions["Cal. Health & Saf. Code § 27000.5(d)"]["snippet"]) == "the definition of “Minor”"
    for citation, chunk in provisions.items():
        if not citation.startswith("Cal."):
            continue
        topic = provision_topic(chunk["snippet"])
        assert topic != "a legal requirement", citation
        # Quoted, never paraphrased: every fragment is the provision's own words (first letter's case aside).
        for fragment in _fragments(topic) if topic.startswith("the rule") else []:
            assert fragment[1:] in chunk["snippet"], (citation, fragment)


def test_a_quote_stops_before_a_cross_reference_so_no_reason_names_absent_law(provisions):
    """§ 27004(b) refers to "Section 27001 or 27002": neither is the answer's citation, so the quote ends before
    them, and the grounding check finds no absent law in any SB 976 reason."""
    for citation, chunk in provisions.items():
        if not citation.startswith("Cal."):
            continue
        topic = provision_topic(chunk["snippet"])
        assert not LAW_MENTION.search(topic), (citation, topic)
        reason = needs_reason(chunk["title"], citation, chunk["snippet"], chunk["jurisdiction"])
        assert absent_law_mentions(reason, [chunk["title"].lower(), citation.lower()]) == [], reason
    consent = provisions["Cal. Health & Saf. Code § 27004(b)"]["snippet"]
    assert "Section 27001" in consent


def test_the_reason_names_the_law_shortly_and_still_fits_the_answer_reserve(provisions):
    """The answer's law field has the full title; its reason the title without the parenthetical. With the demo
    model's tokenizer every SB 976 "Needs" answer fits the reserve the one budget rule gives answers (a longer
    training answer would be dropped, and California's examples with it)."""
    from sft.models import load_tokenizer, resolve

    tokenizer = load_tokenizer(resolve("demo"))
    assert short_title("California SB 976 (Protecting Our Kids from Social Media Addiction Act)") == "California SB 976"
    assert short_title("EU Digital Services Act") == "EU Digital Services Act"
    for citation, chunk in provisions.items():
        if not citation.startswith("Cal."):
            continue
        reason = needs_reason(chunk["title"], citation, chunk["snippet"], chunk["jurisdiction"])
        assert reason.endswith(f"for users in California, which California SB 976 requires in {citation}."), reason
        answer = Answer(compliance_flag=Label.NEEDS, law=chunk["title"], citation=citation, reason=reason)
        tokens = len(tokenizer(render_completion(answer))["input_ids"]) + 1  # + EOS
        assert tokens <= answer_reserve(), (tokens, reason)


def test_a_citation_that_starts_with_its_law_names_it_once_and_fits_the_answer_reserve(provisions):
    """18 U.S.C. § 2258A: "which 18 U.S.C. § 2258A requires in 18 U.S.C. § 2258A(h)" ran 115-117 tokens, and the
    budget dropped 28 of the main job's training answers for the NCMEC law; every one of its provisions fits now."""
    from sft.models import load_tokenizer, resolve

    tokenizer = load_tokenizer(resolve("demo"))
    usc = {c: chunk for c, chunk in provisions.items() if c.startswith("18 U.S.C.")}
    assert "18 U.S.C. § 2258A(h)" in usc
    for citation, chunk in usc.items():
        reason = needs_reason(chunk["title"], citation, chunk["snippet"], chunk["jurisdiction"])
        assert reason.endswith(f"for users in the US, which {citation} requires."), reason
        answer = Answer(compliance_flag=Label.NEEDS, law=chunk["title"], citation=citation, reason=reason)
        assert len(tokenizer(render_completion(answer))["input_ids"]) + 1 <= answer_reserve(), reason
    dsa = provisions["DSA Art. 28(1)"]
    assert needs_reason(dsa["title"], "DSA Art. 28(1)", dsa["snippet"], "EU").endswith(
        "which EU Digital Services Act requires in DSA Art. 28(1).")
