"""The fast-start runtime: a model's towers as ONNX Runtime sessions, with no torch in the process.

``import torch`` and ``import open_clip`` took 3-10 s of every run before the first photo
was embedded; ONNX Runtime imports in 0.15 s and opens ViT-B-32's int8 image tower in about
0.15 s. The towers are exported from open_clip once per model and library versions
(:mod:`clipsort.model.prepare.export`) and each is opened only when first used: a relabel over a cached
library opens the text tower alone, an index the image tower alone.

* Images: open_clip's eval preprocessing redone with Pillow (resize the short side with the
  model's interpolation, centre crop, or squash), checked against open_clip's own transform
  when the artifact is built; pixels travel as uint8 and are normalised at the model.
* Texts: :class:`clipsort.model.texts.ClipTokenizer`, then :class:`clipsort.model.texts.TextTower`:
  prompts cut to their own length, and the beginnings that prompts share ("a photo of a")
  computed once, when the model's text tower allows it (a causal mask and end-of-text pooling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from clipsort.errors import ModelError, UsageError
from clipsort.labels.score import normalise
from clipsort.model.artifact import DamagedArtifact

if TYPE_CHECKING:
    from PIL import Image

    from clipsort.model.artifact import Artifact
    from clipsort.model.model_spec import ModelSpec
    from clipsort.model.texts import TextTower

T = TypeVar("T")
INSTALL_HINT = "the fast runtime needs ONNX Runtime: pip install onnxruntime"
#: Images per model call for bf16 on CPUs (see :class:`OnnxClip`).
BF16_BATCH_SIZE = 12


def onnxruntime_module() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return onnxruntime


def open_session(path: Any, threads: int) -> Any:
    """An ONNX Runtime session whose threads sleep when idle (spinning takes the decoders' cores)."""
    onnxruntime = onnxruntime_module()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # The files are optimised when built (see clipsort.model.prepare.export); optimising again at each start
    # cost 0.3-1 s and doubled the memory of the session while it ran.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    # Without its arena ONNX Runtime ran as fast here, and its memory stopped growing with each
    # new batch shape (a last, smaller batch; texts of another length).
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        raise DamagedArtifact(f"cannot open {path}: {exc}") from exc


def torchscript_tower(path: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A bf16 TorchScript tower (see :func:`clipsort.model.prepare.towers.trace_bf16`) as a function of float32
    pixels. Imports torch, but neither open_clip nor torchvision."""
    import warnings

    import torch

    torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; still loads and runs
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and others on a bad file
        raise DamagedArtifact(f"cannot open {path}: {exc}") from exc

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(pixels).to(torch.bfloat16)).float().numpy()

    return run


def onnx_tower(path: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime tower (input ``input``, output ``output``) as a function of its input."""
    session = open_session(path, threads)
    return lambda inputs: session.run(None, {"input": inputs})[0]


def text_tower(path: Any, threads: int, manifest: dict[str, Any]) -> TextTower:
    """The artifact's text tower at ``path`` (either layout, see :mod:`clipsort.model.texts`)."""
    from clipsort.model.texts import TextTower

    session = open_session(path, threads)
    prefix = manifest.get("text_prefix")
    return TextTower(
        lambda feeds: session.run(None, feeds),
        int(manifest["dim"]),
        int(manifest["tokenizer"]["end"]),
        (int(prefix[0]), int(prefix[1]), int(prefix[2])) if prefix else None,
    )


class _Beside:
    """``work()`` in a thread of its own; :meth:`result` waits for it and returns or raises what it did."""

    def __init__(self, work: Callable[[], T]) -> None:
        import threading

        self._work = work
        self._outcome: tuple[bool, Any] = (False, None)
        self._thread = threading.Thread(target=self._run, name="clipsort-open", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = (True, self._work())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._outcome = (False, exc)

    def result(self) -> Any:
        self._thread.join()
        done, value = self._outcome
        if not done:
            raise value
        return value


class Preprocess:
    """open_clip's eval transform (``resize_mode`` shortest or squash) on Pillow alone, to uint8 CHW."""

    def __init__(self, config: dict[str, Any]) -> None:
        from PIL import Image

        size = config["size"]
        self.size: tuple[int, int] = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.resize_mode = config.get("resize_mode") or "shortest"
        if self.resize_mode not in ("shortest", "squash") or (
            self.resize_mode == "shortest" and len(set(self.size)) != 1
        ):
            raise ModelError(f"preprocessing {self.resize_mode} {self.size} is not supported by the fast runtime")
        interpolation = config.get("interpolation") or "bicubic"
        self.resample = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.BICUBIC
        mean = np.asarray(config["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(config["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the uint8 pixels.
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def __call__(self, picture: Image.Image) -> np.ndarray:
        height, width = self.size
        if self.resize_mode == "squash":
            picture = picture.resize((width, height), self.resample)
        else:  # torchvision's Resize(int): the short side to the size, the long side in proportion, rounded down
            if picture.width <= picture.height:
                new_size = (height, int(height * picture.height / picture.width))
            else:
                new_size = (int(height * picture.width / picture.height), height)
            if new_size != picture.size:
                picture = picture.resize(new_size, self.resample)
            left = int(round((picture.width - width) / 2.0))
            top = int(round((picture.height - height) / 2.0))
            picture = picture.crop((left, top, left + width, top + height))
        if picture.mode != "RGB":
            picture = picture.convert("RGB")
        return np.ascontiguousarray(np.asarray(picture, dtype=np.uint8).transpose(2, 0, 1))

    def normalise(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        pixels = np.stack(list(batch)).astype(np.float32)
        return pixels * self.scale + self.shift


class OnnxClip:
    """A CLIP model from the fast runtime's artifact, with :class:`clipsort.model.torch_model.ClipModel`'s interface.

    ``precision``: ``int8`` (both towers' weights quantized, ONNX Runtime), ``fp32`` (ONNX
    Runtime), or ``bf16`` (the image tower as TorchScript on torch, the text tower fp32 on
    ONNX Runtime).
    """

    device = "cpu"

    def __init__(
        self,
        spec: ModelSpec,
        artifact: Artifact,
        precision: str,
        threads: int,
        origin: str,
        rebuild: Callable[[], Artifact] | None = None,
        text_fallback: Callable[[], Any] | None = None,
    ) -> None:
        self.spec = spec
        self.artifact = artifact
        self.precision = precision
        self.threads = threads
        self.origin = origin
        self.logit_scale: float = artifact.logit_scale
        self.image_size: int = artifact.image_size
        self.min_side: int = artifact.image_size
        from clipsort import settings

        # bf16 runs on torch, whose CUDA build alone holds 650 MB once imported; its activations
        # grow by about 7 MB per picture in a batch (ViT-B-32), so bf16 batches are smaller.
        self.batch_size = BF16_BATCH_SIZE if precision == "bf16" else settings.DEFAULT_BATCH_SIZE
        self.images_encoded = 0
        self._preprocess = Preprocess(artifact.preprocess)
        #: The towers, each a function of its input, opened on first use.
        self._image: Callable[[np.ndarray], np.ndarray] | None = None
        self._text: TextTower | None = None
        self._tokenizer: Any = None
        self._rebuild = rebuild
        #: Loads open_clip's model for the texts when the artifact has no text tower (another tokenizer).
        self._text_fallback = text_fallback
        self._text_model: Any = None

    @property
    def name(self) -> str:
        return self.spec.display

    def describe(self) -> str:
        runtime = "torch (TorchScript)" if self.precision == "bf16" else "onnxruntime"
        return f"cpu ({self.precision}, {self.threads} thread{'s' if self.threads != 1 else ''}) with {runtime}"

    @property
    def text_part(self) -> str:
        """The text tower this precision runs: int8 with int8 images (when built), else fp32."""
        return "text-int8" if self.precision == "int8" and self.artifact.has("text-int8") else "text-fp32"

    def _tower(self, part: str, opener: Callable[[Any, int], T]) -> T:
        """Open one tower; a file that cannot be opened is removed and the artifact rebuilt (once)."""
        try:
            return opener(self.artifact.file(part), self.threads)
        except DamagedArtifact:
            self.artifact.discard()
            if self._rebuild is None:
                raise
            self.artifact = self._rebuild()
            self._rebuild = None
            return opener(self.artifact.file(part), self.threads)

    def _open_text(self, path: Any, threads: int) -> TextTower:
        return text_tower(path, threads, self.artifact.manifest)  # the manifest of a rebuilt artifact too

    def prepare(self, picture: Image.Image) -> np.ndarray:
        """Resize and crop as open_clip does, to uint8 CHW pixels. Thread-safe."""
        return self._preprocess(picture)

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        if self._image is None:
            opener = torchscript_tower if self.precision == "bf16" else onnx_tower
            self._image = self._tower(f"image-{self.precision}", opener)
        output = self._image(self._preprocess.normalise(batch))
        self.images_encoded += len(batch)
        return normalise(output)

    def encode_images(self, pictures: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare(p) for p in pictures])

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self._text_fallback is not None:  # the artifact has no text tower: open_clip's
            if self._text_model is None:
                self._text_model = self._text_fallback()
            return self._text_model.encode_texts(texts)
        if self._text is None:
            from clipsort.model.texts import ClipTokenizer

            # ONNX Runtime opens the tower without holding the GIL (0.1-0.15 s for ViT-B-32), so
            # it opens beside the tokenizer's loading and the prompts' tokenizing.
            part = self.text_part
            opening = _Beside(lambda: self._open_text(self.artifact.file(part), self.threads))
            tokenizer = self.artifact.tokenizer
            self._tokenizer = ClipTokenizer(tokenizer["vocabulary"], tokenizer["context_length"], tokenizer["clean"])
            tokens = self._tokenizer(list(texts))
            try:
                self._text = opening.result()
            except DamagedArtifact:  # removed and rebuilt here, in the run's thread
                self._text = self._tower(part, self._open_text)
        else:
            tokens = self._tokenizer(list(texts))
        return normalise(self._text(tokens, batch_size))
