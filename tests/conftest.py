import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shipped_nlp():
    """The shipped pipeline (models/nhs-nlp-ner, int8 on CPU), loaded once per session."""
    import nhs_nlp

    return nhs_nlp.load()
