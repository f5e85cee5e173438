"""Running the stages: the pipeline that finds, embeds and judges photos, the local engine (decode
threads ahead of the model) and the Ray engine, the label set made ready to judge
(:mod:`.classifier`), and the events and report every command fills.

May import: model, writes, store, labels, photos.
"""
