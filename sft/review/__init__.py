"""The review queue (``geosft review``): reviewers confirm or correct the model's flags over a real database,
every decision is an append-only audit event, and reviewed items export as training data.

Imports only ``sft.core`` and ``sft.inference``; only ``sft.cli`` imports this room (tests/test_layout.py).
"""
