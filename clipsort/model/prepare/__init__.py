"""Preparing a model's fast runtime, once per model and library versions (:mod:`.export` builds the
artifact). A standard CLIP whose weights are a safetensors file (:mod:`.weights`) has its towers
written straight from that file (:mod:`.graphs`), checked against open_clip's arithmetic in numpy
(:mod:`.reference`), without torch (:mod:`.direct`); any other model is exported through open_clip
and torch (:mod:`.towers`). 8-bit weights: :mod:`.quantize`. A run that finds its artifact
imports none of this.
"""
