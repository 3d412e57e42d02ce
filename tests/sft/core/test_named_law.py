"""A spec that names its law or article gets that law's items in its prompt (sft.core.named_law via law_context)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sft.core.contract import Feature, LawContext
from sft.core.named_law import Named, match_level, named_provisions, pin_named
from sft.core.prompt import law_context
from tests.conftest import CORPUS


def _item(cid: str, title: str, citation: str, jur: str = "EU") -> LawContext:
    return LawContext(id=cid, law_id=cid.split("#")[0], title=title, citation=citation, jurisdiction=jur,
                      snippet="text")


GDPR35 = _item("eu_gdpr#art35-1", "EU General Data Protection Regulation", "GDPR Art. 35(1)")
GDPR5 = _item("eu_gdpr#art5-1", "EU General Data Protection Regulation", "GDPR Art. 5(1)")
DSA35 = _item("eu_dsa#art35-1", "EU Digital Services Act", "DSA Art. 35(1)")
USC_H = _item("us#h", "18 U.S.C. § 2258A (Reporting requirements of providers)", "18 U.S.C. § 2258A(h)", "US")
USC_A = _item("us#a", "18 U.S.C. § 2258A (Reporting requirements of providers)", "18 U.S.C. § 2258A(a)", "US")
FL = _item("fl#3", "Florida HB 3 (Online Protections for Minors)", "Fla. Stat. § 501.1736(3)", "US-FL")
UT = _item("ut#311", "Utah Social Media Usage Amendments (HB 311)", "Utah Code § 13-63-301(1)", "US-UT")


def test_provisions_and_laws_are_read_however_a_spec_writes_them():
    def read(text):
        return [(n.law, n.number, n.sub) for n in named_provisions(text)]

    assert read("Privacy legal requires a DPIA under GDPR Art. 35; the face scan is biometric under Art. 9.") == [
        ("GDPR", "35", ""), ("GDPR", "9", "")], "an article alone is paired with the law named nearest"
    assert read("Bump vault retention to 1 year, per 2258A(h) as amended.") == [(None, "2258A", "(h)")]
    assert read("Required by DSA Article 26(1); copy reviewed by legal.") == [("DSA", "26", "(1)")]
    assert (None, "27002", "(b)") in read("Cal. Health & Safety Code 27002(b) requires default-on controls")
    assert read("To comply with SB 976 we ship a chronological feed") == [("SB 976", None, "")]
    assert read("Fla. Stat. § 501.1736(3)") == [(None, "501.1736", "(3)")]
    # Provisions come before laws named alone: they pin an article, and only the first few get a search.
    assert read("The Digital Services Act applies; see DSA Art. 39.")[0] == ("DSA", "39", "")
    # Dates, counts, versions, durations and an article with no law named anywhere are not provisions.
    assert read("In 2023 we shipped v2.1 to 1500 users at 10-20 ms; Art. 5 of the playbook, 24/7 support.") == []


def test_items_are_matched_by_law_then_article_then_subdivision():
    gdpr35 = Named("GDPR", "35", "", "GDPR Art. 35")
    assert match_level(gdpr35, GDPR35) == 2
    assert match_level(gdpr35, GDPR5) == 0, "same law, other article"
    assert match_level(gdpr35, DSA35) == 0, "same article number, other law"
    assert match_level(Named("Digital Services Act", "35", "", "x"), DSA35) == 2, "the law by its title"
    h = Named(None, "2258A", "(h)", "2258A(h)")
    assert (match_level(h, USC_H), match_level(h, USC_A)) == (3, 2)
    assert match_level(Named("HB 3", None, "", "HB 3"), FL) == 1
    assert match_level(Named("HB 3", None, "", "HB 3"), UT) == 0, "HB 3 is not HB 311"
    assert match_level(Named("Per AI Act", "50", "", "x"), _item("ai#50", "EU Artificial Intelligence Act",
                                                                "AI Act Art. 50(2)")) == 2


def test_named_items_go_first_and_the_rest_keep_their_order():
    hits = [DSA35, GDPR5, USC_A, GDPR35, USC_H, GDPR5]
    assert [h.id for h in pin_named(hits, [Named(None, "2258A", "(h)", "2258A(h)")])] == [
        "us#h", "us#a", "eu_dsa#art35-1", "eu_gdpr#art5-1", "eu_gdpr#art35-1"]
    assert [h.id for h in pin_named(hits, [])] == [h.id for h in hits[:5]], "deduplicated, order kept"


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory):
    """A real BM25 index over the really extracted GDPR and DSA."""
    from data_prep.extract import run_extract
    from sft.core.retrieval import LocalRetriever, build_local_index

    src = tmp_path_factory.mktemp("laws")
    for name in ("eu_gdpr_2016_679.txt", "eu_dsa_2022_2065.txt"):
        shutil.copy(CORPUS / "laws" / name, src)
    out: Path = tmp_path_factory.mktemp("index")
    run_extract(src, out / "chunks.jsonl", workers=1, progress=False)
    build_local_index(out / "chunks.jsonl", out / "index")
    return LocalRetriever(out / "index")


def test_a_spec_naming_its_article_is_shown_that_article(retriever):
    # The spec's other words are about what online platforms do with illegal content and notices (the DSA's
    # vocabulary); the article it names is the GDPR's.
    spec = Feature(name="Notice flow for flagged illegal content on the platform",
                   description="Users who flag illegal content on the online platform get a notice of the decision; "
                               "the reporter's personal data in these notices is retained 30 days, as GDPR Art. 5 "
                               "requires for storage.")
    ctx = law_context(retriever, spec, {})
    assert ctx and all(c.citation.startswith("GDPR Art. 5(") for c in ctx), [c.citation for c in ctx]
    without = Feature(name=spec.name, description=spec.description.replace(", as GDPR Art. 5 requires for storage", ""))
    assert law_context(retriever, without, {})[0].law_id == "eu_dsa", "unnamed, the spec's words decide"


def test_a_law_outside_the_index_changes_nothing(retriever):
    from sft.core.context import SEARCH_K, select_context
    from sft.core.prompt import retrieval_query

    spec = Feature(name="COPPA verifiable parental consent for kids mode",
                   description="Kids mode voice features need COPPA verifiable parental consent before collection.")
    assert [n.law for n in named_provisions(spec.description)] == ["COPPA"]
    plain = select_context(retriever.search(retrieval_query(spec, {}), k=SEARCH_K))
    assert [c.id for c in law_context(retriever, spec, {})] == [c.id for c in plain]
