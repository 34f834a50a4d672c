"""Run a trained model on images: ``mtcp.load(path).predict(image)``.

>>> import mtcp
>>> predictor = mtcp.load("runs/synthetic_tiny/version_0/checkpoints/best.ckpt")
>>> maps = predictor.predict("photo.jpg")          # or a numpy array / PIL image / a list
>>> maps["depth"].shape, maps["depth"].dtype        # (H, W) of the photo, float32 metres

Accepted files:

* a training checkpoint (``.ckpt`` written by ``mtcp train``), loaded with
  ``torch.load(weights_only=True)``: tensors and primitive values only, nothing executable;
* a weights file (``.safetensors``) written by ``mtcp export --format safetensors`` or
  :func:`mtcp.export.save_safetensors` (weights plus the model config; it needs the stored
  input size);
* an ONNX graph (``.onnx``) written by ``mtcp export --format onnx``, run on the CPU by
  onnxruntime (:class:`mtcp.inference.onnx_runtime.OnnxModel`; needs the ``export`` extra).
  A static graph runs at its fixed input size, a dynamic one at the size stored in its
  metadata.

A file that would need full unpickling is refused unless ``trust=True``.

Outputs (one dict per image, every map at the input image's size ``H × W``):

===============  =========================  ============================================
key              numpy dtype / shape        meaning
===============  =========================  ============================================
``semseg``       int64 [H, W]               class id (``human_parts`` likewise)
``depth``        float32 [H, W]             metres (>= 0)
``normals``      float32 [H, W, 3]          unit vectors, camera frame (x right, y down,
                                            z forward)
``edge``         float32 [H, W]             boundary probability in [0, 1]
``sal``          float32 [H, W]             saliency probability in [0, 1]
===============  =========================  ============================================

Images are resized to the network's input size (the training size stored in the file), and
the outputs resized back (bilinear on logits, metres and vectors; normals re-normalised).
Grayscale images are replicated to RGB, an alpha channel is dropped, 16-bit and float images
are scaled to the 8-bit range.

``predictor.predict(image, review=True)`` adds ``"review"``: the image's review score
(:class:`mtcp.inference.review.Review`: a score in [0, 1], higher = more likely wrong, the flag
and its reasons) from the calibration stored with the model at the end of ``mtcp train``;
``probabilities=True`` adds ``"<task>_probs"`` (softmax, float32 ``[H, W, C]``) for class tasks;
``refine=True`` adjusts depth and normals jointly so that they agree
(:mod:`~mtcp.inference.refine`; the model must predict both and store its training camera).

Modules: :mod:`~mtcp.inference.predictor` (``Predictor``, ``load``, the resize policy),
:mod:`~mtcp.inference.formats` (checkpoint and safetensors readers),
:mod:`~mtcp.inference.onnx_runtime` (``OnnxModel``), :mod:`~mtcp.inference.maps` (outputs →
physical maps), :mod:`~mtcp.inference.evaluate` (``evaluate``: the one evaluation loop),
:mod:`~mtcp.inference.outputs` (files written per image, coherence scores, CSV columns),
:mod:`~mtcp.inference.inputs` (image files, folders, videos) and
:mod:`~mtcp.inference.folder` (``predict_to_folder``: what ``mtcp predict`` does),
:mod:`~mtcp.inference.refine` (joint depth–normal refinement).
The review score: :mod:`~mtcp.inference.review` (parts and score),
:mod:`~mtcp.inference.review_calibration` (its fit), :mod:`~mtcp.inference.input_stats`
(image statistics), :mod:`~mtcp.inference.review_check` (the report of ``mtcp evaluate``,
with :mod:`~mtcp.inference.corruptions`); :mod:`~mtcp.inference.groups` (metrics per group).
"""

from mtcp.inference.evaluate import evaluate
from mtcp.inference.formats import load_checkpoint_model
from mtcp.inference.maps import to_numpy_maps
from mtcp.inference.predictor import ImageLike, Predictor, load, to_rgb_array

__all__ = [
    "ImageLike",
    "Predictor",
    "evaluate",
    "load",
    "load_checkpoint_model",
    "to_numpy_maps",
    "to_rgb_array",
]
