"""The model: which one (:mod:`.model_spec`), its files, devices and precisions, the runtimes that
run it (ONNX Runtime's artifact, prepared by :mod:`.prepare`; open_clip and torch), the tokenizer and
text tower, the calibration, and :mod:`.embed`, which turns photos and prompts into vectors through
the cache. Only this package imports torch, and only when a model is needed.

May import: store, labels, photos.
"""
