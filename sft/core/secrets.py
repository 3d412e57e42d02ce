"""What a credential looks like, for refusing one where only a *reference* belongs and for keeping one out of
every message a user or a log sees.

The shapes are the formats with a fixed prefix and a long random tail (an AWS access key id, a Hugging Face
token, an OpenAI-style key): a Secrets Manager name such as ``hf-token`` or ``prod/hf_token`` never matches,
so refusing them costs no legitimate value.
"""

from __future__ import annotations

import re

CREDENTIAL = re.compile(r"\bAKIA[0-9A-Z]{16}\b|\bhf_[A-Za-z0-9]{30,}\b|\bsk-[A-Za-z0-9]{20,}\b")
REDACTED = "[redacted credential]"


def looks_like_credential(value: object) -> bool:
    return isinstance(value, str) and CREDENTIAL.search(value) is not None


def redact(text: str) -> str:
    """``text`` with every credential-shaped part replaced (messages, failure files, logs)."""
    return CREDENTIAL.sub(REDACTED, text)
