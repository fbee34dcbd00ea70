"""nhs_nlp: organisations, attack groups, affected services and quantities from cyber-incident news."""
__version__ = "0.1.0"

__all__ = ["__version__"]
