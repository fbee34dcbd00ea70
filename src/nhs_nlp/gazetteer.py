"""Names of threat actors, ransomware operations and malware from the shared gazetteers.

Read from ``../shared/data/gazetteers`` (or $NHS_NLP_GAZETTEERS); never copied
into the repository.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from .labels import ATTACK_GROUP, MALWARE

GAZETTEER_ENV = "NHS_NLP_GAZETTEERS"


def gazetteer_dir(path: Optional[Path] = None) -> Path:
    if path is not None:
        return Path(path)
    if os.environ.get(GAZETTEER_ENV):
        return Path(os.environ[GAZETTEER_ENV])
    return Path("../shared/data/gazetteers")


def iter_entries(path: Optional[Path] = None) -> Iterator[Tuple[str, str, List[str]]]:
    """Yield ``(source, kind, names)`` per gazetteer entry; kind is a label.

    Sources: MISP threat actors (ATTACK_GROUP), MISP ransomware (ATTACK_GROUP: mostly
    operations and their brands), MITRE ATT&CK intrusion sets (ATTACK_GROUP) and
    malware (MALWARE).
    """
    folder = gazetteer_dir(path)
    files = {
        "misp-threat-actor": folder / "misp-galaxy" / "threat-actor.json",
        "misp-ransomware": folder / "misp-galaxy" / "ransomware.json",
        "mitre-attack": folder / "mitre-attack" / "enterprise-groups-and-malware.json",
    }
    for name, file in files.items():
        if not file.exists():
            raise FileNotFoundError(f"gazetteer file {file} not found; point --gazetteers or ${GAZETTEER_ENV} at the folder")
    for source in ("misp-threat-actor", "misp-ransomware"):
        for v in json.loads(files[source].read_text(encoding="utf8"))["values"]:
            names = [v["value"]] + list((v.get("meta") or {}).get("synonyms") or [])
            yield source, ATTACK_GROUP, names
    for obj in json.loads(files["mitre-attack"].read_text(encoding="utf8"))["objects"]:
        kind = ATTACK_GROUP if obj.get("type") == "intrusion-set" else MALWARE
        names = [obj["name"]] + list(obj.get("aliases") or []) + list(obj.get("x_mitre_aliases") or [])
        yield "mitre-attack", kind, names


def name_labels(path: Optional[Path] = None) -> Dict[str, str]:
    """Every gazetteer name -> label (ATTACK_GROUP wins when a name is both)."""
    out: Dict[str, str] = {}
    for _, kind, names in iter_entries(path):
        for n in names:
            n = n.strip()
            if len(n) < 2:
                continue
            if out.get(n) != ATTACK_GROUP:
                out[n] = kind
    return out
