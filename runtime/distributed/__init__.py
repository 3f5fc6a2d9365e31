"""onnxforge beyond one machine: the engines users already run, wired to onnxforge models.

- :mod:`.ray_data`: batch inference on Ray Data (:class:`~.ray_data.OnnxPredictor` for
  ``Dataset.map_batches``; ``onnxforge infer --engine ray``);
- :mod:`.spark`: batch inference in Spark (:func:`~.spark.predict_udf`, a ``predict_batch_udf``);
- :mod:`.ray_train`: data-parallel training on Ray Train (:class:`~.ray_train.RayTrain`, the
  strategy of ``Trainer(..., workers=N)``; ``onnxforge train --workers N --engine ray``), each
  worker on the ``onnx`` backend with its gradients averaged by torch.distributed (gloo).

Ray, PySpark and PyTorch are optional (the ``ray`` and ``spark`` extras); each feature says in one
line which extra it needs. This room sits above training and inference: they never import it.
"""
