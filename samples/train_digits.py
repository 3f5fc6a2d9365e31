"""Train an MLP on the bundled 8x8 digits with the Python API, export it, and run the export.

    python samples/train_digits.py [--epochs 40] [--out runs/digits]
    python -m onnxforge.samples.train_digits
"""

from __future__ import annotations

import argparse

from onnxforge.graphs import mlp
from onnxforge.runtime import Trainer, load
from onnxforge.samples import load_digits


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="runs/digits")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_digits()
    model = mlp(64, [128], 10, activation="relu", seed=0)
    trainer = Trainer(model, args.out, lr=3e-3, optimizer="adamw", schedule="cosine", device="auto")
    history = trainer.fit((x_train, y_train), (x_test, y_test), epochs=args.epochs, batch_size=32, overwrite=True)
    print(f"trained on {trainer.device.name}: val accuracy {history[-1]['val_accuracy']:.2%}")

    session = load(f"{args.out}/model.onnx")  # the exported file, as any application would open it
    accuracy = float((session.predict(x_test).argmax(axis=1) == y_test).mean())
    print(f"exported model: test accuracy {accuracy:.2%}")
    return accuracy


if __name__ == "__main__":
    main()
