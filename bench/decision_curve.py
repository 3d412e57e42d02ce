"""How well checkpoints decide the flag on the realistic spec set: the learning curve behind #13's defaults.

    python bench/decision_curve.py --index RUN/job/model/index CKPT [CKPT ...] [--max-length 448]

For each adapter (a `geosft train` output or one of its `checkpoint-N` dirs) the realistic specs
(`examples/realistic/specs.csv`, never trained on) go through the predict path's prompt builder (glossary notes,
the model's law index, the one budget rule), and the flag is the constrained decoder's first step: the best of
the three label continuations. No reason is generated, so a checkpoint costs ~1 minute on 2 CPU cores instead of
the ~4 of `geosft eval`. The baseline measured in the same run is the majority label; a specs file's
`law_not_in_corpus` rows accept Needs or NEI, as `geosft eval` does.

Measured 2026-12-03 (2 CPU cores, demo model, shipped data and settings: lr 1e-3, label_loss_weight 5,
balance_labels, 448 tokens, ~5 s/step): realistic macro-F1 0.23 at 75 steps, 0.36 at 150, 0.60 at 300
(accuracy 0.32 / 0.45 / 0.62); the template split's accuracy 0.40 / 0.48 / 0.81.
"""

from __future__ import annotations

import argparse
import collections
import csv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def macro_f1(gold: list[str], pred: list[str], labels: list[str]) -> float:
    f1s = []
    for lab in labels:
        tp = sum(g == p == lab for g, p in zip(gold, pred, strict=True))
        fp = sum(p == lab != g for g, p in zip(gold, pred, strict=True))
        fn = sum(g == lab != p for g, p in zip(gold, pred, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="geoprep index dir (a model's index/)")
    ap.add_argument("--specs", type=Path, default=REPO / "examples" / "realistic" / "specs.csv")
    ap.add_argument("--glossary", type=Path, default=REPO / "examples" / "corpus" / "glossary" / "terminology.csv")
    ap.add_argument("--max-length", type=int, default=448)
    args = ap.parse_args()

    import torch

    from sft.core.contract import DEFAULT_INSTRUCTION, LABELS, Feature, Label
    from sft.core.glossary import Glossary
    from sft.core.prompt import build_prompt, prompt_budget
    from sft.inference.decoding import FLAG_PREFIX, LAW_PREFIX, _encode, _prefill, _prompt_ids, score_from_prefix
    from sft.inference.predict import contexts_for, open_feature_retriever
    from sft.models import load_model_and_tokenizer

    rows = list(csv.DictReader(args.specs.open(encoding="utf-8")))
    glossary = Glossary.load(args.glossary)
    retriever = open_feature_retriever("local", None, args.index, None)
    names = [lab.value for lab in LABELS]
    majority = collections.Counter(r["label"] for r in rows).most_common(1)[0][0]
    print(f"{len(rows)} realistic specs; majority label {majority!r}: "
          f"macro-F1 {macro_f1([r['label'] for r in rows], [majority] * len(rows), names):.3f}")
    for ckpt in args.checkpoints:
        model, tok = load_model_and_tokenizer(ckpt)
        model.eval()
        prompts = []
        for r in rows:
            feature = Feature(id=r["id"], name=r["name"], description=r["description"])
            notes = glossary.notes_for(f"{feature.name} {feature.description}")
            fitted, _ = build_prompt(feature, contexts_for(retriever, feature, notes), notes, DEFAULT_INSTRUCTION,
                                     tok, prompt_budget(args.max_length))
            prompts.append(fitted.prompt)
        label_ids = [_encode(tok, name + LAW_PREFIX) for name in names]
        pred: list[str] = []
        for i in range(0, len(prompts), 8):
            base = [_prompt_ids(tok, p) + _encode(tok, FLAG_PREFIX) for p in prompts[i : i + 8]]
            with torch.inference_mode():
                prefix = _prefill(model, base, tok.pad_token_id)
                idx = [j for j in range(len(base)) for _ in names]
                s = score_from_prefix(model, prefix, idx, label_ids * len(base), [0] * len(idx), 24)
            pred += [names[max(range(3), key=lambda k: s[j * 3 + k])] for j in range(len(base))]
        gold = [p if r["category"] == "law_not_in_corpus" and p != Label.NOT_NEEDED.value else r["label"]
                for p, r in zip(pred, rows, strict=True)]
        acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(rows)
        print(f"{ckpt}: macro-F1 {macro_f1(gold, pred, names):.3f}, accuracy {acc:.3f}, "
              f"predicted {dict(collections.Counter(pred))}", flush=True)


if __name__ == "__main__":
    main()
