"""Pipeline components, one module each; their factories are declared as entry points."""
