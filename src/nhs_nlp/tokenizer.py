"""spaCy's English tokenizer with fixes for news about money and threat groups.

Two defaults split badly in this domain, so spans could not align with tokens:

- single lowercase letter + full stop is a special case ("m." for an initial), so
  the sentence-final "£4.5m." kept "m." together and the QUANTITY "£4.5m" ended
  inside a token;
- a full stop after "$" or ")" stayed attached ("Lapsus$.", "NoName057(16).").
"""
from __future__ import annotations

import re
from typing import Callable

from spacy.language import Language
from spacy.tokenizer import Tokenizer
from spacy.util import compile_suffix_regex, registry

_SINGLE_LETTER_ABBREV = re.compile(r"^[a-z]\.$")
EXTRA_SUFFIXES = (r"(?<=[$)])\.",)


def customize_tokenizer(tokenizer: Tokenizer, nlp: Language) -> Tokenizer:
    """Apply the fixes in place. RETURNS (Tokenizer): the same tokenizer."""
    rules = {k: v for k, v in tokenizer.rules.items() if not _SINGLE_LETTER_ABBREV.match(k)}
    tokenizer.rules = rules
    suffixes = list(nlp.Defaults.suffixes or []) + list(EXTRA_SUFFIXES)
    tokenizer.suffix_search = compile_suffix_regex(suffixes).search
    return tokenizer


@registry.tokenizers("nhs_nlp.Tokenizer.v1")
def create_tokenizer() -> Callable[[Language], Tokenizer]:
    """The tokenizer factory used in our configs (``[nlp.tokenizer]``)."""
    base = registry.tokenizers.get("spacy.Tokenizer.v1")()

    def make(nlp: Language) -> Tokenizer:
        return customize_tokenizer(base(nlp), nlp)

    return make


def blank_english() -> Language:
    """A blank English pipeline with our tokenizer (for corpus tools and tests)."""
    import spacy

    return spacy.blank("en", config={"nlp": {"tokenizer": {"@tokenizers": "nhs_nlp.Tokenizer.v1"}}})
