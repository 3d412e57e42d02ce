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
(accuracy 0.32 / 0.45 / 0.62); the template split's accuracy 0.40 / 0.48 / 0.81. With the shorter prompt and
the composed-driver data (session 6): 0.32 at 150 steps, 0.51 at 300; the flag swings between labels from one
checkpoint to the next (112 "Needs" of 146 at 150 steps, 15 at 300). Each checkpoint's line adds its right
answers by category. A finished run's directory (not its checkpoints) also holds the label head training fitted
(sft.core.label_head): both flags are printed for it, the LM's flag step and the head's.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="geoprep index dir (a model's index/)")
    ap.add_argument("--specs", type=Path, default=REPO / "examples" / "realistic" / "specs.csv")
    ap.add_argument("--glossary", type=Path, default=REPO / "examples" / "corpus" / "glossary" / "terminology.csv")
    ap.add_argument("--max-length", type=int, default=448)
    args = ap.parse_args()

    from sft.core.contract import Answer, Prediction
    from sft.core.glossary import Glossary
    from sft.core.gold import read_gold_specs
    from sft.core.label_head import LabelHead
    from sft.inference.decoding import label_scores
    from sft.inference.evaluate import compute_metrics
    from sft.inference.predict import contexts_for, open_feature_retriever
    from sft.inference.predictor import Predictor, model_instruction
    from sft.models import load_model_and_tokenizer

    specs = read_gold_specs(args.specs)
    glossary = Glossary.load(args.glossary)
    retriever = open_feature_retriever("local", None, args.index, None)
    items = []
    for s in specs:
        notes = glossary.notes_for(f"{s.feature.name} {s.feature.description}")
        items.append((s.feature, contexts_for(retriever, s.feature, notes), notes))

    def score(flags: list[str]) -> dict:
        """geosft eval's metrics; a spec's accepted labels (law not in the corpus: Needs or NEI) count as gold."""
        golds = [Answer(compliance_flag=f if f in s.accepted else s.label) for s, f in zip(specs, flags, strict=True)]
        return compute_metrics(golds, [Prediction(valid=True, answer=Answer(compliance_flag=f)) for f in flags])

    majority = collections.Counter(s.label for s in specs).most_common(1)[0][0]
    base = score([majority] * len(specs))
    print(f"{len(specs)} realistic specs; majority label {majority.value!r}: macro-F1 {base['macro_f1']:.3f}, "
          f"accuracy {base['accuracy']:.3f}")
    for ckpt in args.checkpoints:
        model, tok = load_model_and_tokenizer(ckpt)
        model.eval()
        # The instruction the run trained with: a finished run's train_config.json (the checkpoint's own dir, the
        # run's output dir above checkpoints/, or the main job's job/model), else the default with a note.
        near = (ckpt, ckpt.parent, ckpt.parent.parent, ckpt.parent.parent / "model")
        trained = next((d for d in near if (d / "train_config.json").is_file()), None)
        if trained is None:
            print(f"{ckpt}: no train_config.json here or above (run still training?): the default instruction")
        instruction = model_instruction(trained) if trained else model_instruction(ckpt)
        predictor = Predictor(model, tok, model_id=str(ckpt), max_length=args.max_length, instruction=instruction)
        prompts = [predictor.fit_prompt(f, c, n)[1] for f, c, n in items]
        # A finished run's dir has the label head training fitted (checkpoints do not): both flags are scored.
        head = LabelHead.load(ckpt) if (ckpt / "label_head.json").is_file() else None
        for name, h in (("LM flag step", None), *((("label head", head),) if head else ())):
            flags = [max(d, key=d.__getitem__) for d in label_scores(model, tok, prompts, head=h)]
            m = score(flags)
            right = collections.Counter(s.category for s, f in zip(specs, flags, strict=True) if f in s.accepted)
            total = collections.Counter(s.category for s in specs)
            print(f"{ckpt} ({name}): macro-F1 {m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}, "
                  f"predicted {dict(collections.Counter(flags))}\n  right by category: "
                  + ", ".join(f"{c} {right[c]}/{n}" for c, n in sorted(total.items())), flush=True)


if __name__ == "__main__":
    main()
