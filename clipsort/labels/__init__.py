"""Labels and decisions: label files (text, TOML, learned), the names clipsort writes, prompts,
zero-shot label embeddings, the decision rules, learning from examples and evaluation. Pure data
and numpy: nothing here loads a model or reads a photo.

May import: nothing of clipsort but the top-level modules (errors, settings, safe_files, privacy).
"""
