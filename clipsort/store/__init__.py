"""What clipsort keeps between runs: the embedding cache (its SQLite file and its lock), the record
of sidecars written, and the journals of moves (written, read, checked).

May import: photos.
"""
