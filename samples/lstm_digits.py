"""Train an LSTM that reads each 8x8 digit as 8 rows of 8 pixels, and print held-out accuracy.

    python samples/lstm_digits.py [--epochs 20] [--layers 1] [--out runs/lstm_digits]
    python -m onnxforge.samples.lstm_digits
"""

from __future__ import annotations

import argparse
import time

from onnxforge.graphs import lstm
from onnxforge.runtime import Trainer, load
from onnxforge.samples import load_digits


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="Training epochs.")
    parser.add_argument("--layers", type=int, default=1, help="Stacked LSTM layers.")
    parser.add_argument("--hidden", type=int, default=64, help="Hidden size of every layer.")
    parser.add_argument("--out", default="runs/lstm_digits", help="Run folder.")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_digits("rows")  # [N, 8 steps, 8 features]
    model = lstm(8, hidden=args.hidden, layers=args.layers, classes=10, head="sequence", seed=0)
    trainer = Trainer(model, args.out, lr=5e-3, optimizer="adamw", schedule="cosine", device="auto")
    start = time.perf_counter()
    trainer.fit((x_train, y_train), (x_test, y_test), epochs=args.epochs, batch_size=32, overwrite=True)
    seconds = time.perf_counter() - start

    session = load(f"{args.out}/model.onnx")  # the exported inference model
    accuracy = float((session.predict(x_test).argmax(axis=1) == y_test).mean())
    print(f"LSTM on {trainer.device.name}, {args.epochs} epochs in {seconds:.1f} s: "
          f"held-out accuracy {accuracy:.2%} ({len(y_test)} digits)")
    return accuracy


if __name__ == "__main__":
    main()
