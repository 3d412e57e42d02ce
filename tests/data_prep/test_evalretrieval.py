"""geoprep eval-retrieval on a real BM25 index over really extracted law chunks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.evalretrieval import (
    first_relevant_rank,
    generated_queries,
    realistic_queries,
    run_eval_retrieval,
)
from data_prep.features import POSITIVE, FeatureSpec, write_features
from data_prep.mine import Obligation, write_obligations
from sft.core.chunks import read_chunks
from sft.core.contract import Feature
from sft.core.errors import UserError
from sft.core.prompt import law_context
from sft.core.retrieval import LocalRetriever, build_local_index
from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chunks (real extractor) + index of 18 U.S.C. 2258A, the DSA and California SB 976."""
    from data_prep.extract import run_extract

    src = tmp_path_factory.mktemp("laws")
    for name in ("us_18usc2258a.txt", "eu_dsa_2022_2065.txt", "us_ca_sb976_2024.txt"):
        shutil.copy(CORPUS / "laws" / name, src)
    out = tmp_path_factory.mktemp("pipeline")
    run_extract(src, out / "chunks.jsonl", workers=1, progress=False)
    build_local_index(out / "chunks.jsonl", out / "index")
    return out


def _spec(fid: str, name: str, description: str, obligation_id: str) -> FeatureSpec:
    return FeatureSpec(feature=Feature(id=fid, name=name, description=description), kind=POSITIVE, group=fid,
                       obligation_id=obligation_id)


@pytest.fixture
def generated(pipeline_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    chunks = {c.id: c for c in read_chunks(pipeline_dir / "chunks.jsonl")}
    report, ads = chunks["us_18usc2258a#s2258A-a~1"], next(c for c in chunks.values() if c.citation ==
                                                            "DSA Art. 28(2)")
    obs = [Obligation(id=f"ob-{i}", chunk_id=c.id, law_id=c.law_id, title=c.title, citation=c.citation,
                      jurisdiction=c.jurisdiction, topic="t", text=c.snippet[:200]) for i, c in enumerate((report, ads))]
    write_obligations(tmp_path / "obligations.jsonl", obs)
    specs = [
        # worded like the provision: its chunk comes first
        _spec("f1", "CSAM reporting", "Report apparent child sexual abuse material to the CyberTipline of NCMEC "
              "as soon as reasonably possible after obtaining actual knowledge (duty to report).", "ob-0"),
        # worded like a product spec of a different provision of the same obligation's law: a miss at 1
        _spec("f2", "Teen ad targeting off", "No personalised ads for teens in the EU based on their profile.",
              "ob-1"),
        FeatureSpec(feature=Feature(id="n1", name="Dark mode", description="A dark theme."), kind="business",
                    group="n1"),  # not a positive: not scored
    ]
    write_features(tmp_path / "features.jsonl", specs)
    return tmp_path / "features.jsonl", tmp_path / "obligations.jsonl"


def test_generated_features_are_scored_on_their_source_chunk(pipeline_dir: Path, generated):
    queries = generated_queries(*generated)
    assert [q.feature.id for q in queries] == ["f1", "f2"]
    r = LocalRetriever(pipeline_dir / "index")
    ranks = [first_relevant_rank(law_context(r, q.feature, {}, k=10), q.relevant) for q in queries]
    assert ranks[0] == 1
    [score] = run_eval_retrieval({"local": r}, {"generated": queries}, pipeline_dir / "eval")
    assert score.n == 2 and score.hit_at_1 == (1 + (ranks[1] == 1)) / 2
    assert score.mrr == pytest.approx((1 + (1 / ranks[1] if ranks[1] else 0)) / 2)
    assert score.hit_at_1 <= score.hit_at_3 <= score.hit_at_10 and score.queries_per_s > 0


def test_the_ranking_is_the_prompt_context_so_hit_at_3_is_what_the_model_sees(pipeline_dir: Path):
    r = LocalRetriever(pipeline_dir / "index")
    for text in ("Minors' feeds in California must not be addictive without parental consent",
                 "Ads based on profiling for minors in the EU", "report child sexual abuse to NCMEC"):
        f = Feature(id="x", name=text, description=text)
        assert law_context(r, f, {}, k=3) == law_context(r, f, {}, k=10)[:3]


def test_realistic_specs_hit_on_gold_citations_at_a_boundary(pipeline_dir: Path, tmp_path: Path):
    specs = tmp_path / "specs.csv"
    specs.write_text(
        "id,name,description,label,law_id,citation,category\n"
        'R1,NCMEC auto-report,"Under 18 U.S.C. 2258A, report apparent CSAM to the CyberTipline.",'
        "Needs Geo-Compliance,us_18usc2258a,18 U.S.C. § 2258A,explicit_law\n"
        'R2,Same but a gold no chunk has,"Under 18 U.S.C. 2258A, report apparent CSAM to the CyberTipline.",'
        "Needs Geo-Compliance,us_18usc2258a,18 U.S.C. § 2258,explicit_law\n"
        "R3,Dark mode,A dark theme.,No Geo-Compliance Needed,,,universal\n", encoding="utf-8")
    queries = realistic_queries(specs)
    assert [q.feature.id for q in queries] == ["R1", "R2"]  # no gold citation: not a retrieval query
    [score] = run_eval_retrieval({"local": LocalRetriever(pipeline_dir / "index")}, {"realistic": queries},
                                 tmp_path / "out")
    # R1's hits cite "18 U.S.C. § 2258A(a)" (matches at the '(' boundary); R2's gold "§ 2258" must not match
    # "§ 2258A" (no boundary): one of two.
    assert (score.hit_at_1, score.hit_at_10, score.mrr) == (0.5, 0.5, 0.5)
    saved = json.loads((tmp_path / "out" / "eval_retrieval.json").read_text())
    assert saved["scores"][0]["hit_at_1"] == 0.5
    assert "| local | realistic | 2 | 0.500 |" in (tmp_path / "out" / "eval_retrieval.md").read_text()
    with pytest.raises(UserError, match="no rows with a gold citation"):
        specs.write_text("id,name,description,label,law_id,citation,category\nR3,a,b,No Geo-Compliance Needed,,,u\n")
        realistic_queries(specs)


def _geoprep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_prep.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
                          timeout=300)


def test_command_scores_both_sets_in_one_run_and_errors_are_one_line(pipeline_dir: Path, generated,
                                                                     tmp_path: Path):
    features, obligations = generated
    out = tmp_path / "er"
    res = _geoprep("eval-retrieval", "--features", str(features), "--obligations", str(obligations),
                   "--index", str(pipeline_dir / "index"), "--specs", str(REPO / "examples/realistic/specs.csv"),
                   "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "| local | generated | 2 |" in res.stdout and "| local | realistic |" in res.stdout
    assert {s["dataset"] for s in json.loads((out / "eval_retrieval.json").read_text())["scores"]} == {
        "generated", "realistic"}
    res = _geoprep("eval-retrieval", "--index", str(pipeline_dir / "index"))
    assert res.returncode == 1 and res.stderr.strip() == (
        "geoprep: error: eval-retrieval: nothing to score: pass --pipeline DIR, --features/--obligations or --specs")
    res = _geoprep("eval-retrieval", "--specs", str(REPO / "examples/realistic/specs.csv"), "--retriever",
                   "bedrock-kb")
    assert res.returncode == 1 and "needs --knowledge-base-id" in res.stderr and "Traceback" not in res.stderr
