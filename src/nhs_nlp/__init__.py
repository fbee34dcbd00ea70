"""nhs_nlp: organisations, attack groups, affected services and quantities from cyber-incident news."""
from .api import extract, load

__version__ = "0.1.0"

__all__ = ["load", "extract", "__version__"]
