"""The corpus in corpus/articles: valid, buildable byte-identically, and as large as promised."""
from pathlib import Path

import pytest

from nhs_nlp.corpus import build, load_sources, statistics

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ROOT / "corpus" / "articles"


@pytest.fixture(scope="module")
def loaded():
    return load_sources([ARTICLES])


def test_corpus_validates(loaded):
    assert loaded.problems == [], "\n".join(str(p) for p in loaded.problems[:20])


def test_corpus_meets_its_size_and_coverage_targets(loaded):
    stats = statistics(loaded.articles)["all"]
    assert stats["articles"] >= 300 and stats["words"] >= 150_000
    assert 150 <= stats["min_words"] and stats["max_words"] <= 1_600  # title + body
    assert stats["distinct_attack_groups"] >= 100
    assert stats["sectors"] >= 15 and stats["countries"] >= 20
    assert stats["health_incident_articles"] >= 40
    assert stats["negatives"] >= 0.2 * stats["articles"]
    assert stats["multi_incident"] >= 0.1 * stats["articles"]
    words = {s: statistics([a for a in loaded.articles if a.split == s])["all"]["words"] for s in ("train", "dev", "test")}
    total = sum(words.values())
    assert abs(words["train"] / total - 0.70) < 0.05 and all(abs(words[s] / total - 0.15) < 0.05 for s in ("dev", "test"))


@pytest.mark.slow
def test_corpus_builds_deterministically(tmp_path):
    first = build([ARTICLES], tmp_path / "a")
    build([ARTICLES], tmp_path / "b")
    assert sum(first.values()) >= 300
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
