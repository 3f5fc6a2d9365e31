"""Train a ConvNet on the bundled 8x8 digits read as 1x8x8 images, and print held-out accuracy.

    python samples/convnet_digits.py [--epochs 15] [--batchnorm] [--out runs/convnet_digits]
    python -m onnxforge.samples.convnet_digits
"""

from __future__ import annotations

import argparse
import time

from onnxforge.graphs import convnet
from onnxforge.runtime import Trainer, load
from onnxforge.samples import load_digits


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="Training epochs.")
    parser.add_argument("--batchnorm", action="store_true", help="Batch normalisation after every convolution.")
    parser.add_argument("--out", default="runs/convnet_digits", help="Run folder.")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_digits("images")  # [N, 1, 8, 8]
    model = convnet((1, 8, 8), channels=(16, 32), kernel=3, pool=2, classes=10, batchnorm=args.batchnorm, seed=0)
    trainer = Trainer(model, args.out, lr=3e-3, optimizer="adamw", schedule="cosine", device="auto")
    start = time.perf_counter()
    trainer.fit((x_train, y_train), (x_test, y_test), epochs=args.epochs, batch_size=32, overwrite=True)
    seconds = time.perf_counter() - start

    session = load(f"{args.out}/model.onnx")  # the exported inference model
    accuracy = float((session.predict(x_test).argmax(axis=1) == y_test).mean())
    print(f"ConvNet on {trainer.device.name}, {args.epochs} epochs in {seconds:.1f} s: "
          f"held-out accuracy {accuracy:.2%} ({len(y_test)} digits)")
    return accuracy


if __name__ == "__main__":
    main()
