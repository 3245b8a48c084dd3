"""The MNIST examples users would otherwise run, as their authors wrote them, for the
`time_to_accuracy` suite. Each runs in its own process:

  python -m cnn_lab.benchmarks.mnist_examples FRAMEWORK SEED EVAL_EVERY MAX_STEPS ARRAYS

FRAMEWORK is `flax` or `keras`; ARRAYS an .npz of the MNIST arrays (`train_x`
uint8 [60000, 28, 28, 1], `train_y`, `test_x` [10000, 28, 28, 1], `test_y`);
MAX_STEPS > 0 stops early (the suite's quick mode), 0 runs the example's own length.
Every EVAL_EVERY training steps and at the end the runner prints `eval STEP ACCURACY`
on the 10,000 test images (stdout, flushed: the suite timestamps each line on arrival).

- Flax (`examples/mnist`, Linen): two 3x3 convolutions (32, 64) with average pooling,
  a 256-unit hidden layer; SGD learning rate 0.1, momentum 0.9, batch 128, 10 epochs,
  pixels / 255, a fresh permutation each epoch that drops the incomplete batch, one jit
  for gradients and one for the update.
- Keras (`mnist_convnet`): two 3x3 convolutions (32, 64) with max pooling, dropout
  0.5, softmax output; Adam (Keras defaults), categorical cross-entropy, batch 128,
  15 epochs of `model.fit` with `validation_split=0.1` (it trains on the first 54,000).

Both evaluate with a forward pass in batches of 1,000 (the Flax example's own
evaluation also computes gradients on the whole test set; we do not charge it that).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from cnn_lab.errors import fail

EVAL_BATCH = 1000


def emit(step: int, accuracy: float) -> None:
  print(f"eval {step} {accuracy:.6f}", flush=True)


def _flax_parts():
  """-> (CNN, apply_model, update_model, correct): the example's module and jitted
  functions, and a forward-only count of correct predictions for evaluation."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax

  class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.avg_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
      x = nn.avg_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
      x = nn.relu(nn.Dense(256)(x.reshape((x.shape[0], -1))))
      return nn.Dense(10)(x)

  @jax.jit
  def apply_model(state, images, labels):
    def loss_fn(params):
      logits = state.apply_fn({"params": params}, images)
      loss = optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 10)).mean()
      return loss, logits
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return grads, loss, jnp.mean(jnp.argmax(logits, -1) == labels)

  @jax.jit
  def update_model(state, grads):
    return state.apply_gradients(grads=grads)

  @jax.jit
  def correct(params, images, labels):
    return jnp.sum(jnp.argmax(CNN().apply({"params": params}, images), -1) == labels)

  return CNN, apply_model, update_model, correct


def flax_example(arrays: dict, seed: int, eval_every: int, max_steps: int) -> None:
  """Flax's `examples/mnist` (Linen): model, optimizer and loop as the example has them."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax.training import train_state

  CNN, apply_model, update_model, correct = _flax_parts()
  train_x = jnp.float32(arrays["train_x"]) / 255.0
  train_y = jnp.asarray(arrays["train_y"])
  test_x, test_y = jnp.float32(arrays["test_x"]) / 255.0, jnp.asarray(arrays["test_y"])

  def evaluate(state, step):
    hits = sum(int(correct(state.params, test_x[i:i + EVAL_BATCH], test_y[i:i + EVAL_BATCH]))
               for i in range(0, len(test_x), EVAL_BATCH))
    emit(step, hits / len(test_x))

  rng, init_rng = jax.random.split(jax.random.key(seed))
  model = CNN()
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=model.init(init_rng, jnp.ones([1, 28, 28, 1]))["params"],
      tx=optax.sgd(0.1, 0.9))
  batch, step = 128, 0
  steps_per_epoch = len(train_x) // batch
  for _ in range(10):
    rng, input_rng = jax.random.split(rng)
    perms = jax.random.permutation(input_rng, len(train_x))[:steps_per_epoch * batch]
    for perm in perms.reshape((steps_per_epoch, batch)):
      grads, _, _ = apply_model(state, train_x[perm, ...], train_y[perm, ...])
      state = update_model(state, grads)
      step += 1
      if step % eval_every == 0:
        evaluate(state, step)
      if step == max_steps:
        break
    if step == max_steps:
      break
  if step % eval_every:
    evaluate(state, step)


def keras_example(arrays: dict, seed: int, eval_every: int, max_steps: int) -> None:
  """Keras's `mnist_convnet` on the JAX backend; a callback evaluates every `eval_every`
  batches (and stops the fit at `max_steps`)."""
  os.environ["KERAS_BACKEND"] = "jax"
  import keras
  from keras import layers

  keras.utils.set_random_seed(seed)
  x_train = np.expand_dims(arrays["train_x"][..., 0].astype("float32") / 255, -1)
  x_test = np.expand_dims(arrays["test_x"][..., 0].astype("float32") / 255, -1)
  y_train = keras.utils.to_categorical(arrays["train_y"], 10)
  y_test = keras.utils.to_categorical(arrays["test_y"], 10)
  model = keras.Sequential([
      keras.Input(shape=(28, 28, 1)),
      layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
      layers.MaxPooling2D(pool_size=(2, 2)),
      layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
      layers.MaxPooling2D(pool_size=(2, 2)),
      layers.Flatten(),
      layers.Dropout(0.5),
      layers.Dense(10, activation="softmax"),
  ])
  model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

  class EvaluateEvery(keras.callbacks.Callback):
    step = 0

    def evaluate(self):
      result = self.model.evaluate(x_test, y_test, batch_size=EVAL_BATCH, verbose=0,
                                   return_dict=True)
      emit(self.step, result["accuracy"])

    def on_train_batch_end(self, batch, logs=None):
      self.step += 1
      if self.step % eval_every == 0:
        self.evaluate()
      if self.step == max_steps:
        self.model.stop_training = True

    def on_train_end(self, logs=None):
      if self.step % eval_every:
        self.evaluate()

  model.fit(x_train, y_train, batch_size=128, epochs=15, validation_split=0.1,
            callbacks=[EvaluateEvery()], verbose=0)


EXAMPLES = {"flax": flax_example, "keras": keras_example}


def main(argv: list[str]) -> None:
  if len(argv) != 6 or argv[1] not in EXAMPLES:
    raise fail("arguments", f"FRAMEWORK ({'|'.join(EXAMPLES)}) SEED EVAL_EVERY MAX_STEPS "
               "ARRAYS", " ".join(argv[1:]))
  with np.load(argv[5]) as data:
    arrays = {k: data[k] for k in data.files}
  EXAMPLES[argv[1]](arrays, int(argv[2]), int(argv[3]), int(argv[4]))


if __name__ == "__main__":
  main(sys.argv)
