"""Builders for small, real artefacts used by several test modules."""
from pathlib import Path
from typing import List

ARTICLE = """---
id: {id}
title: "[{group}](ATTACK_GROUP) attack disrupts [blood tests](SERVICE) at [{victim}](ORG)"
outlet: wire
date: 2024-06-04
sectors: [health]
countries: [GB]
incidents: [{incident}]
split: {split}
records:
  - incident: {incident}
    attack_type: ransomware
    attack_groups: [{group}]
    malware: []
    victims: [{victim}]
    affected_organisations: []
    other_organisations: [NCSC]
    affected_services: [blood tests]
    quantities: ["six NHS trusts = 6"]
    attribution: null
    date: null
---
The [{group}](ATTACK_GROUP) gang attacked [{victim}](ORG) on Monday, the [NCSC](ORG) said.

[Blood tests](SERVICE) were cancelled at [six NHS trusts](QUANTITY) while [{victim}](ORG) restored its systems.
"""

GROUPS = ["Qilin", "LockBit", "Rhysida", "Akira", "Medusa", "Conti"]
VICTIMS = ["Synnovis", "Advanced", "Capita", "Tietoevry", "HCRG", "Arnold Clark"]


def write_mini_corpus(folder: Path) -> List[Path]:
    """Six tiny articles, two per split."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    splits = ["train", "train", "dev", "dev", "test", "test"]
    for i, (group, victim, split) in enumerate(zip(GROUPS, VICTIMS, splits)):
        aid = f"t-{i:03d}-mini"
        path = folder / f"{aid}.md"
        path.write_text(ARTICLE.format(id=aid, group=group, victim=victim, incident=f"inc-{i}", split=split), encoding="utf8")
        paths.append(path)
    return paths


ANNOCTR_SAMPLE = """<DOCSTART>\tO\tO\tO\tO\tO\tO

APT29\tB-GROUP\tO\tO\tO\tO\tB-GROUP
used\tO\tO\tO\tO\tO\tO
Mimikatz\tB-TOOL\tO\tO\tO\tO\tB-TOOL
against\tO\tO\tO\tO\tO\tO
Microsoft\tB-ORG\tO\tO\tO\tO\tB-ORG
in\tO\tO\tO\tO\tO\tO
2024\tB-DATE\tO\tO\tO\tO\tB-DATE
.\tO\tO\tO\tO\tO\tO

The\tO\tO\tO\tO\tO\tO
Emotet\tB-MALWARE\tO\tO\tO\tO\tB-MALWARE
loader\tO\tO\tO\tO\tO\tO
infected\tO\tO\tO\tO\tO\tO
500\tO\tO\tO\tO\tO\tO
hosts\tO\tO\tO\tO\tO\tO
.\tO\tO\tO\tO\tO\tO

Systems\tO\tO\tO\tO\tO\tO
were\tO\tO\tO\tO\tO\tO
taken\tO\tO\tO\tO\tO\tO
offline\tO\tO\tO\tO\tO\tO
at\tO\tO\tO\tO\tO\tO
Lazarus\tB-GROUP\tO\tO\tO\tO\tB-GROUP
Group\tI-GROUP\tO\tO\tO\tO\tI-GROUP
targets\tO\tO\tO\tO\tO\tO
.\tO\tO\tO\tO\tO\tO
"""


def write_annoctr(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.bio").write_text(ANNOCTR_SAMPLE, encoding="utf8")
    (folder / "dev.bio").write_text(ANNOCTR_SAMPLE, encoding="utf8")
    return folder


def write_tiny_bert(folder: Path) -> Path:
    """A 1-layer BERT with a small word-piece vocabulary, built locally (no hub)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = "the a gang attacked on monday said were cancelled at while restored its systems attack disrupts blood tests six nhs trusts ncsc used against in".split()
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,'’-$£%()")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + letters + ["##" + c for c in letters]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    return folder
