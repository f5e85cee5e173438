"""Finding and reading photos: the first stage.

Walking folders (:mod:`.discover`), the format table (:mod:`.formats`), decoders (Pillow with JPEG
draft mode, HEIF, RAW through rawpy, the GPU's JPEG decoder), EXIF facts, the perceptual hash, the
folders other applications manage, and where a photo lives (:mod:`.location`: a local path or an
object-store URL, decided here once; the stages after this one never ask which).

May import: nothing of clipsort but the top-level modules (errors, settings, safe_files, privacy).
"""
