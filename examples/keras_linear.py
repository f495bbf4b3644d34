r"""Seed 002 in Keras 3 on the PyTorch backend: Dense(1) regression, SGD(0.01), MSE.

The data are synthetic, ``y = X·w + 0.1·noise`` with a fixed seed, held in
module-level arrays that batchscope hands to ``model.fit``. No TensorFlow is
needed. From the command line:

    KERAS_BACKEND=torch batchscope sweep --keras examples/keras_linear.py:make_model \
        -b 32..1024 --epochs 3

or from Python (this file's ``__main__``):

    python examples/keras_linear.py

``KERAS_LINEAR_N`` sets the number of training samples (default 10,000; a
fifth as many more are held out for validation).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402

N_FEATURES = 10
NOISE_STD = 0.1
N_TRAIN = int(os.environ.get("KERAS_LINEAR_N", "10000"))
N_VAL = max(1, N_TRAIN // 5)

_rng = np.random.default_rng(2)
true_w = _rng.standard_normal((N_FEATURES, 1)).astype("float32")
_x = _rng.standard_normal((N_TRAIN + N_VAL, N_FEATURES)).astype("float32")
_y = (_x @ true_w + NOISE_STD * _rng.standard_normal((N_TRAIN + N_VAL, 1))).astype("float32")

x_train, y_train = _x[:N_TRAIN], _y[:N_TRAIN]
x_val, y_val = _x[N_TRAIN:], _y[N_TRAIN:]


def make_model() -> keras.Model:
    """Called once per trial, after batchscope has seeded Keras: same weights every time."""
    model = keras.Sequential([keras.Input((N_FEATURES,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    return model


if __name__ == "__main__":
    from batchscope.integrations.keras import sweep_model

    run = sweep_model(make_model, [32, 256], epochs=1)
    for trial in run.trials:
        if trial.ok and trial.samples_per_s is not None:
            print(
                f"batch {trial.batch_size:>5}: {trial.samples_per_s:>10,.0f} samples/s, "
                f"final loss {trial.final_train_loss:.4f}"
            )
        else:
            print(f"batch {trial.batch_size:>5}: {trial.status} ({trial.error})")
