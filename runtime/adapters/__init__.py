"""Low-rank adapters (LoRA): trained on any ONNX model, written in ONNX Runtime's adapter format,
served many over one base model.

    lora          ``LoRA`` settings; which weights are targets; adapter names, shapes, initial values
    rewrite       adapters into a graph (training form, serving form), adapters merged into weights
    adapter_file  ``.onnx_adapter`` files (ONNX Runtime's format) written and read
    run           what a LoRA training run trains and writes into its run folder
    serving       many adapters over one base session, picked per request; a folder watched

May import: errors, modelio, ort, passes, inference.
"""

from onnxforge.runtime.adapters.adapter_file import AdapterFile, read_adapter, write_adapter
from onnxforge.runtime.adapters.lora import LoRA, find_targets
from onnxforge.runtime.adapters.rewrite import merged, with_adapters
from onnxforge.runtime.adapters.run import ADAPTERS_FILE, LORA_MODEL, LoRARun

__all__ = ["ADAPTERS_FILE", "AdapterFile", "LORA_MODEL", "LoRA", "LoRARun", "find_targets", "merged",
           "read_adapter", "with_adapters", "write_adapter"]
