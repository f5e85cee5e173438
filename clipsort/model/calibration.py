"""The model's *unrelated level* (docs/scoring.md): how alike its vectors of plain pictures and of
everyday prompts are, measured once per model and kept in the cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort.store.cache import as_stored

if TYPE_CHECKING:
    from clipsort.model.model_spec import LoadedModel
    from clipsort.store.cache import EmbeddingCache

#: The cache's name for the unrelated level; bump its version when the way it is measured changes.
UNRELATED_FACT = "unrelated_level_v1"
#: The plain pictures' vectors are kept among the model's texts under these keys (a NUL first:
#: no prompt starts so).
PICTURE_KEY = "\x00plain-picture:"


def plain_vectors(model: Callable[[], LoadedModel], kept: tuple[EmbeddingCache, int] | None) -> np.ndarray:
    """Vectors of the plain pictures (:func:`plain_pictures`): from ``kept`` (a cache and the model's
    number there) when it has them, else embedded by ``model()`` and kept there."""
    count = len(plain_pictures())
    keys = [f"{PICTURE_KEY}{i}" for i in range(count)]
    if kept is not None:
        cache, model_id = kept
        found = cache.texts(model_id, keys)
        if len(found) == count:
            return np.stack([found[k] for k in keys])
    loaded = model()
    photos_so_far = loaded.images_encoded  # the count is of photos: plain pictures are not
    vectors = as_stored(loaded.encode_images(plain_pictures()))
    loaded.images_encoded = photos_so_far
    if kept is not None:
        cache.put_texts(model_id, keys, vectors)
    return vectors


def unrelated_level_of(pictures: np.ndarray, text_vectors: Callable[[Sequence[str]], np.ndarray]) -> float:
    """The mean cosine between plain pictures (black to white, a gradient, noise: their vectors)
    and everyday prompts (:data:`clipsort.labels.decide.UNRELATED_PROMPTS` in the built-in templates)."""
    from clipsort.labels.decide import UNRELATED_PROMPTS
    from clipsort.labels.label_set import prompts_for
    from clipsort.labels.score import label_embedding, normalise

    per_word = [prompts_for(word) for word in UNRELATED_PROMPTS]
    vectors = text_vectors([p for prompts in per_word for p in prompts])
    texts = np.stack([label_embedding(chunk) for chunk in np.split(vectors, len(per_word))])
    return float((normalise(pictures) @ texts.T).mean())


def plain_pictures() -> list[Any]:
    """Pictures of nothing: five grey levels, a gradient and noise (fixed, so the level is repeatable)."""
    from PIL import Image

    size = (224, 224)
    pictures = [Image.new("RGB", size, (v, v, v)) for v in (0, 64, 128, 192, 255)]
    pictures.append(Image.linear_gradient("L").resize(size).convert("RGB"))
    rng = np.random.default_rng(0)
    pictures.append(Image.fromarray(rng.integers(64, 192, (*size, 3), dtype=np.uint8), "RGB"))
    return pictures
