"""Retrieval of law chunks behind one interface, with an on-disk cache in front of any backend.

* :class:`LocalRetriever` (default): a BM25 index (bm25s) over the chunks. The index directory is
  self-contained (bm25 files + ``chunks.jsonl`` + ``meta.json``) so it can be copied into a model
  directory and shipped to serving.
* :class:`KendraRetriever`: Amazon Kendra's Retrieve API, mapped to the same :class:`LawContext` items.
* :class:`BedrockKBRetriever`: Amazon Bedrock Knowledge Bases' Retrieve API (bedrock-agent-runtime), for
  accounts that cannot create a Kendra index; the chunks get there with ``geoprep kb-load``.
* :class:`CachedRetriever`: sqlite cache keyed by (backend, index, query, k, filter). Kendra and Bedrock bill
  per query, so a re-run makes no repeat calls and an interrupted run resumes where it stopped.

Jurisdiction filter: a *prefix* match on the code's dash-separated parts. ``"US"`` matches ``US`` and every
``US-*`` state (federal law applies in every state); ``"US-CA"`` matches only ``US-CA``; ``"EU"`` only EU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sft.core.chunks import read_chunks, write_chunks
from sft.core.contract import LawContext
from sft.core.errors import UserError
from sft.core.files import write_json_atomic
from sft.core.named_law import Named, match_level

log = logging.getLogger(__name__)
KENDRA_MAX_QUERY_WORDS = 30  # Retrieve API: QueryText "can contain at most 30 token words"
# The Kendra document attributes that ``geoprep kendra-load`` writes and KendraRetriever reads: one contract.
KENDRA_ATTR_JURISDICTION = "jurisdiction"
KENDRA_ATTR_LAW_ID = "law_id"
KENDRA_ATTR_CITATION = "citation"
KENDRA_ATTR_PAGE = "page"
KENDRA_ATTR_URI = "_source_uri"  # Kendra's own (reserved) fields from here on
KENDRA_ATTR_LANGUAGE = "_language_code"
KENDRA_ATTR_DATE = "_created_at"
# The metadata attributes ``geoprep kb-load`` writes in each chunk's ``.metadata.json`` sidecar and
# BedrockKBRetriever reads back (and filters on): one contract, like the Kendra attributes above.
KB_ATTR_JURISDICTION = "jurisdiction"
KB_ATTR_LAW_ID = "law_id"
KB_ATTR_CITATION = "citation"
KB_ATTR_PAGE = "page"
KB_ATTR_CHUNK_ID = "chunk_id"
KB_ATTR_TITLE = "title"
KB_ATTR_URI = "uri"
KB_ATTR_DATE = "date"
KB_ATTR_ARTICLE = "article"
KB_ATTR_SECTION = "section"
KB_ATTR_DOC_KIND = "doc_kind"  # law | secondary: secondary sources are background, never cited
KB_ATTR_FOUND_BY = "found_by"  # how the chunk's metadata was found (registry, content, inferred)
KB_MAX_RESULTS = 100  # Retrieve: vectorSearchConfiguration.numberOfResults is 1..100
KB_MAX_QUERY_CHARS = 20000  # Retrieve: retrievalQuery.text is at most 20,000 characters
INDEX_FORMAT = 1


@runtime_checkable
class Retriever(Protocol):
    name: str

    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]:
        """The ``k`` most relevant chunks (score filled), most relevant first."""
        ...


def jurisdiction_matches(chunk_jurisdiction: str, wanted: str | None) -> bool:
    """Prefix match on dash-separated parts: 'US' matches 'US' and 'US-CA'; 'US-CA' matches only 'US-CA'."""
    if not wanted:
        return True
    have, want = chunk_jurisdiction.upper().split("-"), wanted.strip().upper().split("-")
    return have[: len(want)] == want


def _stemmer(name: str | None):
    if not name:
        return None
    try:
        import Stemmer
    except ImportError:
        raise UserError(f"this index was built with the {name} stemmer: pip install PyStemmer") from None
    return Stemmer.Stemmer(name)


def _default_stemmer() -> str | None:
    try:
        import Stemmer  # noqa: F401
    except ImportError:
        log.warning("PyStemmer not installed: indexing without stemming (minors != minor)")
        return None
    return "english"


def _tokenize(texts: list[str], stemmer: Any = None):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)


# --------------------------------------------------------------------------- dense (static embeddings)
# WordLlama's l2_supercat: static token embeddings (32000 x 256, float16, 16 MB) shipped *inside* the
# wordllama wheel (MIT), mean-pooled: no hub download, no torch, ~0.1 ms a query on one CPU core.
# model2vec's potion models are comparable but fetched from the hub at run time (no offline wheel).
DENSE_MODEL = "wordllama-l2_supercat-256"
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009): 1/(60 + rank) from each ranking
FUSE_DEPTH = 100  # each ranking's best 100 enter the fusion; deeper ranks add < 1/160 each


class DenseEncoder:
    """The packaged WordLlama model, loaded from the wheel's own files (its loader looks for the tokenizer in
    the wrong folder and then tries the hub: we pass both files ourselves, so nothing is ever downloaded)."""

    _shared: DenseEncoder | None = None

    def __init__(self) -> None:
        try:
            import wordllama
            from safetensors import safe_open
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference
        except ImportError:
            raise UserError("this index holds dense vectors: pip install wordllama") from None
        root = Path(wordllama.__file__).parent
        with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as f:
            table = f.get_tensor("embedding.weight")
        tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
        self._model = WordLlamaInference(table, tokenizer)

    @classmethod
    def shared(cls) -> DenseEncoder:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        return np.asarray(self._model.embed(texts, norm=True), dtype=np.float32)


def build_local_index(chunks_path: str | Path, out_dir: str | Path, dense: bool = False) -> int:
    """Build a self-contained BM25 index directory from a chunks JSONL (plus dense vectors for hybrid search
    with ``dense``; off by default: hybrid measured worse, docs/retrieval.md). Returns the number of chunks."""
    import bm25s

    chunks = list(read_chunks(chunks_path))
    if not chunks:
        raise UserError(f"{chunks_path}: no chunks to index")
    ids = [c.id for c in chunks]
    dupes = {i for i in ids if ids.count(i) > 1} if len(set(ids)) != len(ids) else set()
    if dupes:
        raise UserError(f"{chunks_path}: duplicate chunk ids: {sorted(dupes)[:5]}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Index the citation and law title too: users search "DSA Article 28" as often as the words.
    corpus = [f"{c.title} {c.citation} {c.snippet}" for c in chunks]
    stemmer = _default_stemmer()
    retriever = bm25s.BM25()
    retriever.index(_tokenize(corpus, _stemmer(stemmer)), show_progress=False)
    retriever.save(str(out_dir / "bm25"))
    write_chunks(out_dir / "chunks.jsonl", chunks)
    retrievers = ["bm25"]
    if dense:
        import numpy as np

        # float16: 1,800 chunks x 256 dims = 0.9 MB beside the model; scores lose nothing that ranks.
        vectors = DenseEncoder.shared().encode(corpus).astype(np.float16)
        tmp = out_dir / "dense.npy.tmp"
        with tmp.open("wb") as fh:
            np.save(fh, vectors)
        tmp.replace(out_dir / "dense.npy")
        retrievers.append(DENSE_MODEL)
    laws = sorted({c.law_id for c in chunks})
    write_json_atomic(
        out_dir / "meta.json",
        {"format": INDEX_FORMAT, "backend": "bm25s", "stemmer": stemmer, "chunks": len(chunks), "laws": laws,
         "retrievers": retrievers, "source": str(chunks_path)},
    )
    return len(chunks)


LOCAL_MODES = ("bm25", "hybrid")


class LocalRetriever:
    """BM25 (default), or BM25 + dense vectors fused by reciprocal rank (``hybrid``, an index built with
    ``dense=True``). BM25 is the default because it measured better on both yardsticks: docs/retrieval.md."""

    name = "local"

    def __init__(self, index_dir: str | Path, mode: str = "bm25"):
        import bm25s

        self.index_dir = Path(index_dir)
        meta = self.index_dir / "meta.json"
        if not meta.is_file():
            raise UserError(f"{self.index_dir}: not a geoprep index (no meta.json; build one with geoprep index)")
        self.meta = json.loads(meta.read_text(encoding="utf-8"))
        self._stem = _stemmer(self.meta.get("stemmer"))
        self.chunks = list(read_chunks(self.index_dir / "chunks.jsonl"))
        self._bm25 = bm25s.BM25.load(str(self.index_dir / "bm25"))
        if mode not in LOCAL_MODES:
            raise UserError(f"local retriever mode must be one of {', '.join(LOCAL_MODES)}, got {mode!r}")
        has_dense = DENSE_MODEL in self.meta.get("retrievers", [])
        if mode == "hybrid" and not has_dense:
            raise UserError(f"{self.index_dir}: index has no dense vectors (rebuild it with wordllama installed)")
        self.mode = mode
        self._dense = None
        if self.mode == "hybrid":
            import numpy as np

            self._dense = np.load(self.index_dir / "dense.npy").astype(np.float32)
            self._encoder = DenseEncoder.shared()

    @property
    def cache_key(self) -> str:
        digest = hashlib.sha256((self.index_dir / "chunks.jsonl").read_bytes()).hexdigest()[:16]
        return digest if self.mode == "bm25" else f"{digest}:{self.mode}"

    def named_items(self, named: Named) -> list[LawContext]:
        """Every chunk of the article or section ``named`` points at, in index order. An index holds them all,
        and BM25 cannot find "GDPR Art. 5" by its number: the tokenizer drops one-character tokens."""
        return [c for c in self.chunks if match_level(named, c) >= 2]

    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]:
        if not query.strip():
            raise UserError("empty query")
        if self.mode == "hybrid":
            return self._hybrid(query, k, jurisdiction)
        return self._bm25_search(query, k, jurisdiction)

    def _hybrid(self, query: str, k: int, jurisdiction: str | None) -> list[LawContext]:
        import numpy as np

        allowed = np.array([jurisdiction_matches(c.jurisdiction, jurisdiction) for c in self.chunks])
        if not allowed.any():
            return []
        fused: dict[int, float] = {}
        lexical = self._bm25_search(query, FUSE_DEPTH, jurisdiction, with_index=True)
        for rank, (idx, _) in enumerate(lexical, 1):
            fused[idx] = 1.0 / (RRF_K + rank)
        sims = self._dense @ self._encoder.encode([query])[0]
        sims[~allowed] = -np.inf
        depth = min(FUSE_DEPTH, int(allowed.sum()))
        top = np.argpartition(-sims, depth - 1)[:depth]
        for rank, idx in enumerate(top[np.argsort(-sims[top])], 1):
            fused[int(idx)] = fused.get(int(idx), 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda t: -t[1])[:k]
        return [self.chunks[i].model_copy(update={"score": s}) for i, s in best]

    def _bm25_search(self, query: str, k: int, jurisdiction: str | None, with_index: bool = False) -> list[Any]:
        tokens = _tokenize([query], self._stem)
        if not tokens.vocab:  # only stopwords / punctuation
            return []
        allowed = [jurisdiction_matches(c.jurisdiction, jurisdiction) for c in self.chunks]
        n_allowed = sum(allowed)
        if n_allowed == 0:
            return []
        # Filter after scoring: ask for enough hits that k survive the filter.
        want = len(self.chunks) if n_allowed < len(self.chunks) else min(k, len(self.chunks))
        docs, scores = self._bm25.retrieve(tokens, k=want, show_progress=False, n_threads=1)
        out = []
        for idx, score in zip(docs[0], scores[0], strict=True):
            if score <= 0 or not allowed[int(idx)]:
                continue
            out.append((int(idx), float(score)) if with_index else
                       self.chunks[int(idx)].model_copy(update={"score": float(score)}))
            if len(out) == k:
                break
        return out


def prefix_values(jurisdiction: str, known: Iterable[str]) -> list[str]:
    """The exact codes the prefix rule admits for ``jurisdiction``: itself plus the known ones under it
    ("US" -> US, US-CA, US-FL ...). For backends whose filters have equality, not our prefix rule."""
    wanted = jurisdiction.strip().upper()
    return sorted({wanted, *(j for j in known if jurisdiction_matches(j, wanted))})


def _adaptive_client(service: str, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, region_name=region, config=Config(retries={"max_attempts": 8, "mode": "adaptive"}))


def kendra_query_text(query: str) -> str:
    """Kendra rejects QueryText over 30 words; keep the first 30 (the feature name and summary lead)."""
    words = query.split()
    if len(words) > KENDRA_MAX_QUERY_WORDS:
        log.debug("kendra: query cut from %d to %d words", len(words), KENDRA_MAX_QUERY_WORDS)
    return " ".join(words[:KENDRA_MAX_QUERY_WORDS])


class KendraRetriever:
    """Amazon Kendra Retrieve API. Documents should carry the attributes ``jurisdiction``, ``law_id``,
    ``citation``, ``page`` (``_source_uri`` and ``_language_code`` are Kendra's own); missing ones fall
    back to the title and the document URI."""

    name = "kendra"

    def __init__(self, index_id: str, client: Any = None, region: str | None = None, page_size: int = 10,
                 language: str = "en", jurisdictions: Iterable[str] = ()):
        if not index_id:
            raise UserError("kendra: an index id is required (--kendra-index-id)")
        if not 1 <= page_size <= 100:
            raise UserError(f"kendra: page_size must be 1..100, got {page_size}")
        self.index_id, self.page_size, self.language = index_id, page_size, language
        # Adaptive retries back off on ThrottlingException (Kendra's query quota is small).
        self.client = client or _adaptive_client("kendra", region)
        # The jurisdictions the index may hold (a law registry's), for the prefix rule of the filter below.
        self.jurisdictions = sorted({j.upper() for j in jurisdictions})

    @property
    def cache_key(self) -> str:
        return f"{self.index_id}:{self.language}"

    def _filter(self, jurisdiction: str | None) -> dict[str, Any]:
        lang = {"EqualsTo": {"Key": KENDRA_ATTR_LANGUAGE, "Value": {"StringValue": self.language}}}
        if not jurisdiction:
            return lang
        # Kendra has no prefix operator on strings: "US" becomes US OR US-CA OR US-FL ... over the
        # jurisdictions the index may hold (plus the one asked for), the same rule as the local index.
        terms = [{"EqualsTo": {"Key": KENDRA_ATTR_JURISDICTION, "Value": {"StringValue": v}}}
                 for v in prefix_values(jurisdiction, self.jurisdictions)]
        jur = terms[0] if len(terms) == 1 else {"OrAllFilters": terms}
        return {"AndAllFilters": [lang, jur]}

    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]:
        if not query.strip():
            raise UserError("empty query")
        resp = self.client.retrieve(
            IndexId=self.index_id,
            QueryText=kendra_query_text(query),
            PageSize=min(max(k, 1), self.page_size),
            AttributeFilter=self._filter(jurisdiction),
        )
        out = [_kendra_item(item) for item in resp.get("ResultItems", [])]
        return [c for c in out if jurisdiction_matches(c.jurisdiction, jurisdiction)][:k]


_CONFIDENCE = {"VERY_HIGH": 1.0, "HIGH": 0.75, "MEDIUM": 0.5, "LOW": 0.25, "NOT_AVAILABLE": 0.0}


def _attr_value(value: dict[str, Any]) -> Any:
    for key in ("StringValue", "LongValue", "DateValue"):
        if key in value:
            return value[key]
    if "StringListValue" in value:
        return value["StringListValue"]
    return None


def _kendra_item(item: dict[str, Any]) -> LawContext:
    attrs = {a["Key"]: _attr_value(a["Value"]) for a in item.get("DocumentAttributes", [])}
    title = item.get("DocumentTitle") or attrs.get("title") or item.get("DocumentId", "")
    uri = attrs.get(KENDRA_ATTR_URI) or item.get("DocumentURI")
    page = attrs.get(KENDRA_ATTR_PAGE) or attrs.get("_excerpt_page_number")
    law_id = str(attrs.get(KENDRA_ATTR_LAW_ID) or re.sub(r"[^a-z0-9]+", "_", str(title).lower()).strip("_")
                 or "kendra")
    date = attrs.get("date") or attrs.get(KENDRA_ATTR_DATE)
    return LawContext(
        id=str(item.get("Id") or item.get("DocumentId")),
        law_id=law_id,
        title=str(attrs.get("law_title") or title),
        citation=str(attrs.get(KENDRA_ATTR_CITATION) or title),
        jurisdiction=str(attrs.get(KENDRA_ATTR_JURISDICTION) or "UNKNOWN"),
        date=str(date)[:10] if date else None,
        uri=uri,
        page=int(page) if page is not None else None,
        source=f"kendra:{item.get('DocumentId', '')}",
        snippet=item.get("Content", ""),
        score=_CONFIDENCE.get(item.get("ScoreAttributes", {}).get("ScoreConfidence", "NOT_AVAILABLE"), 0.0),
    )


class BedrockKBRetriever:
    """Amazon Bedrock Knowledge Bases ``Retrieve`` (bedrock-agent-runtime). Documents carry the metadata
    attributes ``geoprep kb-load`` writes (``jurisdiction``, ``law_id``, ``citation``, ``page``, ``chunk_id``,
    ``title``, ``uri``, ``date``); missing ones fall back to the S3 key and Bedrock's own chunk id."""

    name = "bedrock-kb"

    def __init__(self, knowledge_base_id: str, client: Any = None, region: str | None = None,
                 jurisdictions: Iterable[str] = (), max_pages: int = 10):
        if not re.fullmatch(r"[0-9a-zA-Z]{10}", knowledge_base_id or ""):
            raise UserError(f"bedrock-kb: {knowledge_base_id!r} is not a knowledge base id (10 letters/digits, "
                            "e.g. 'ABCDEFGHIJ'; --knowledge-base-id)")
        self.knowledge_base_id, self.max_pages = knowledge_base_id, max_pages
        # Adaptive retries back off on ThrottlingException (Retrieve's default quota is 20 requests/s).
        self.client = client or _adaptive_client("bedrock-agent-runtime", region)
        self.jurisdictions = sorted({j.upper() for j in jurisdictions})  # as KendraRetriever's

    @property
    def cache_key(self) -> str:
        return self.knowledge_base_id

    def _filter(self, jurisdiction: str) -> dict[str, Any]:
        # Knowledge Bases' startsWith would let "US" match "USX"; the same prefix rule as the local index is an
        # orAll of equals over the known jurisdictions it covers (plus the one asked for).
        terms = [{"equals": {"key": KB_ATTR_JURISDICTION, "value": v}}
                 for v in prefix_values(jurisdiction, self.jurisdictions)]
        return terms[0] if len(terms) == 1 else {"orAll": terms}  # orAll needs at least 2 members

    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]:
        if not query.strip():
            raise UserError("empty query")
        vector: dict[str, Any] = {"numberOfResults": min(max(k, 1), KB_MAX_RESULTS)}
        if jurisdiction:
            vector["filter"] = self._filter(jurisdiction)
        request: dict[str, Any] = {"knowledgeBaseId": self.knowledge_base_id,
                                   "retrievalQuery": {"text": query[:KB_MAX_QUERY_CHARS]},
                                   "retrievalConfiguration": {"vectorSearchConfiguration": vector}}
        out: list[LawContext] = []
        for _ in range(self.max_pages):  # bounded: a service that keeps returning nextToken cannot loop us
            resp = self.client.retrieve(**request)
            out += [_kb_item(r) for r in resp.get("retrievalResults", [])]
            token = resp.get("nextToken")
            if len(out) >= k or not token:
                break
            request["nextToken"] = token
        out = [c for c in out if jurisdiction_matches(c.jurisdiction, jurisdiction)]
        out.sort(key=lambda c: -(c.score or 0.0))
        return out[:k]


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _kb_item(result: dict[str, Any]) -> LawContext:
    meta = result.get("metadata") or {}
    loc = result.get("location") or {}
    uri = (loc.get("s3Location") or {}).get("uri") or (loc.get("webLocation") or {}).get("url")
    key_stem = re.sub(r"\.txt$", "", (uri or "").rsplit("/", 1)[-1])
    chunk_id = meta.get(KB_ATTR_CHUNK_ID) or key_stem or meta.get("x-amz-bedrock-kb-chunk-id") or "bedrock-kb"
    title = meta.get(KB_ATTR_TITLE) or key_stem or chunk_id
    page = meta.get(KB_ATTR_PAGE)
    date = meta.get(KB_ATTR_DATE)
    return LawContext(
        id=str(chunk_id),
        law_id=str(meta.get(KB_ATTR_LAW_ID) or re.sub(r"[^a-z0-9]+", "_", str(title).lower()).strip("_")
                   or "bedrock_kb"),
        title=str(title),
        citation=str(meta.get(KB_ATTR_CITATION) or title),
        article=_opt_str(meta.get(KB_ATTR_ARTICLE)),
        section=_opt_str(meta.get(KB_ATTR_SECTION)),
        jurisdiction=str(meta.get(KB_ATTR_JURISDICTION) or "UNKNOWN"),
        date=str(date)[:10] if date else None,
        uri=meta.get(KB_ATTR_URI) or uri,
        page=int(page) if page not in (None, "") else None,  # numbers come back as JSON floats (60.0)
        source=f"bedrock-kb:{uri or chunk_id}",
        snippet=(result.get("content") or {}).get("text", ""),
        score=float(result.get("score") or 0.0),
        doc_kind=str(meta.get(KB_ATTR_DOC_KIND) or "law"),
        found_by=_opt_str(meta.get(KB_ATTR_FOUND_BY)),
    )


class CachedRetriever:
    """sqlite cache in front of any retriever. Every answer is committed as soon as it arrives, so an
    interrupted run loses nothing and a re-run makes no repeat backend calls."""

    def __init__(self, inner: Retriever, cache_path: str | Path):
        self.inner = inner
        self.name = inner.name
        self.path = Path(cache_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()
        self.hits = self.misses = 0

    def _key(self, query: str, k: int, jurisdiction: str | None) -> str:
        index = getattr(self.inner, "cache_key", "")
        raw = json.dumps([self.inner.name, index, query, k, (jurisdiction or "").upper()])
        return hashlib.sha256(raw.encode()).hexdigest()

    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]:
        key = self._key(query, k, jurisdiction)
        row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.hits += 1
            return [LawContext.model_validate(x) for x in json.loads(row[0])]
        self.misses += 1
        result = self.inner.search(query, k=k, jurisdiction=jurisdiction)
        value = json.dumps([c.model_dump(mode="json") for c in result])
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, value))
        self._db.commit()
        return result

    def named_items(self, named: Named) -> list[LawContext] | None:
        """The inner retriever's :meth:`LocalRetriever.named_items` (no backend call), or None without one."""
        inner = getattr(self.inner, "named_items", None)
        return inner(named) if inner is not None else None

    def close(self) -> None:
        self._db.close()


RETRIEVERS = ("local", "kendra", "bedrock-kb")
MANAGED = ("kendra", "bedrock-kb")  # billed per query: behind the sqlite cache in geoprep


def check_retriever(kind: str, kendra_index_id: str | None = None, knowledge_base_id: str | None = None) -> None:
    """One error for every CLI: an unknown backend, or a managed one without its id."""
    if kind not in RETRIEVERS:
        raise UserError(f"--retriever must be one of {', '.join(RETRIEVERS)}, got {kind!r}")
    if kind == "kendra" and not kendra_index_id:
        raise UserError("--retriever kendra needs --kendra-index-id (or KENDRA_INDEX_ID)")
    if kind == "bedrock-kb" and not knowledge_base_id:
        raise UserError("--retriever bedrock-kb needs --knowledge-base-id (or KNOWLEDGE_BASE_ID)")


def open_retriever(kind: str = "local", *, index_dir: str | Path | None = None,
                   kendra_index_id: str | None = None, cache_path: str | Path | None = None,
                   region: str | None = None, jurisdictions: Iterable[str] = (),
                   knowledge_base_id: str | None = None) -> Retriever:
    """The retriever a user asked for, behind the sqlite cache when ``cache_path`` is given."""
    if kind == "local":
        if index_dir is None:
            raise UserError("local retriever: an index directory is required (build one with geoprep index)")
        inner: Retriever = LocalRetriever(index_dir)
    elif kind == "kendra":
        inner = KendraRetriever(kendra_index_id or "", region=region, jurisdictions=jurisdictions)
    elif kind == "bedrock-kb":
        inner = BedrockKBRetriever(knowledge_base_id or "", region=region, jurisdictions=jurisdictions)
    else:
        raise UserError(f"unknown retriever {kind!r}; expected one of {', '.join(RETRIEVERS)}")
    return CachedRetriever(inner, cache_path) if cache_path else inner
