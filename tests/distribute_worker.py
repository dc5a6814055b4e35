"""Subprocess entry points of tests/test_distribute.py, and the figures of docs/distributed.md.

Distribution needs a fresh TensorFlow: logical devices must be configured, and a
MultiWorkerMirroredStrategy created, before TF initialises its devices, which any earlier test
in a pytest process has done. So the distributed scenarios run here, in a new process each:

    python tests/distribute_worker.py mirrored OUT.json [--xla]
        One training step of a model holding every BatchNormalization-holding layer under
        MirroredStrategy over two logical CPUs, synchronized and not, against single-device
        references computed in the same process: through model.fit without XLA, or with --xla
        through a custom loop whose per-replica step is XLA-compiled (Keras turns XLA off in
        fit under tf.distribute). Writes the differences to OUT.json.

    TF_CONFIG=... python tests/distribute_worker.py multiworker --log LOG --backup DIR
            --epochs N [--hang-after K] [--weights OUT.npz]
        One worker of a MultiWorkerMirroredStrategy job training an SRM model with
        keras.callbacks.BackupAndRestore. Appends a JSON line per epoch begin/end to LOG. With
        --hang-after K it stops responding after backing up epoch K (0-based), so the test can
        kill it as a lost worker.

    python tests/distribute_worker.py measure
        The synchronized-vs-not moving-variance figures quoted in docs/distributed.md.

Importing this module (the test does, for `layer_configs` and `batch_norms`) configures nothing.
"""

import argparse
import json
import os
import sys
import time

GLOBAL_BATCH = 8
LEARNING_RATE = 0.1


def layer_configs():
    """(name, case id, kwargs, input shape) for every registered layer and contract case.

    Walks `keras_recalib.available()`, so layers registered later are covered without edits.
    A name without a contract case yields one entry with case id None (and its defaults).
    """
    from layer_cases import CASES

    import keras_recalib as kr

    for name in kr.available():
        cls = type(kr.get(name))
        cases = [case for case in CASES if case.cls is cls]
        if not cases:
            yield name, None, {}, None
        for case in cases:
            yield name, case.id, dict(case.kwargs), tuple(case.input_shape)


def batch_norms(layer):
    """The BatchNormalization layers nested anywhere inside `layer` (built)."""
    import keras

    # Keras has no public recursive walk over nested sublayers; _flatten_layers is the one
    # its own Model.summary and weight tracking use.
    return [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if isinstance(sub, keras.layers.BatchNormalization)
    ]


def _build(name, kwargs, input_shape, **extra):
    import numpy as np

    import keras_recalib as kr

    layer = kr.get(name, **kwargs, **extra)
    layer(np.zeros(input_shape, "float32"))
    return layer


def _bn_holding_configs():
    """One (name, kwargs, input shape) per layer: its first contract case that holds a BN."""
    chosen = {}
    for name, case_id, kwargs, shape in layer_configs():
        if name in chosen or case_id is None:
            continue
        if batch_norms(_build(name, kwargs, shape)):
            chosen[name] = (name, kwargs, shape)
    return list(chosen.values())


# --- MirroredStrategy over two logical CPUs --------------------------------------------------


def _configure_two_cpus():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _branch_model(configs, synchronized):
    """One input and branch per layer, pooled, concatenated, one Dense head."""
    import keras

    import keras_recalib as kr

    inputs, pooled = [], []
    for name, kwargs, shape in configs:
        x = keras.Input(shape[1:], name=f"in_{name}")
        y = kr.get(name, **{**kwargs, "synchronized": synchronized})(x)
        inputs.append(x)
        pooled.append(keras.layers.GlobalAveragePooling2D()(y))
    features = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
    return keras.Model(inputs, keras.layers.Dense(2)(features))


def _moving_variables(model):
    """(BN path, [moving_mean, moving_variance]) for every BN of the model, in order."""
    return [(bn.path, [bn.moving_mean, bn.moving_variance]) for bn in batch_norms(model)]


def _sum_loss(y, prediction):
    import tensorflow as tf

    # Keras' "mse" per sample, summed and divided by the global batch: replicas' sums add up.
    return tf.reduce_sum(tf.reduce_mean(tf.square(prediction - y), axis=-1)) / GLOBAL_BATCH


def _reference(configs, initial, xs, y, shards):
    """One SGD step on one device where each shard's BN sees only that shard.

    Returns the updated trainable weights and, per shard, the BN moving statistics.
    """
    import tensorflow as tf

    grads, stats, weights = None, [], None
    for part in shards:
        model = _branch_model(configs, synchronized=False)
        model.set_weights(initial)
        with tf.GradientTape() as tape:
            loss = _sum_loss(y[part], model([x[part] for x in xs], training=True))
        shard_grads = tape.gradient(loss, model.trainable_variables)
        if grads is not None:
            shard_grads = [a + b for a, b in zip(grads, shard_grads, strict=True)]
        grads = shard_grads
        weights = [v.numpy() for v in model.trainable_variables]
        stats.append([[v.numpy() for v in pair] for _, pair in _moving_variables(model)])
    updated = [w - LEARNING_RATE * g.numpy() for w, g in zip(weights, grads, strict=True)]
    return updated, stats


def _distributed_step(strategy, configs, synchronized, jit, initial, xs, y):
    import keras
    import tensorflow as tf

    with strategy.scope():
        model = _branch_model(configs, synchronized)
        model.set_weights(initial)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
    if not jit:
        model.compile(optimizer, "mse", jit_compile=False)
        model.fit(xs, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    else:
        # Keras turns XLA off under tf.distribute (jit_compile=True fails in fit), so the
        # per-replica forward and backward pass is the XLA-compiled part.
        with strategy.scope():
            optimizer.build(model.trainable_variables)

        @tf.function(jit_compile=True)
        def replica_gradients(inputs, targets):
            with tf.GradientTape() as tape:
                loss = _sum_loss(targets, model(list(inputs), training=True))
            return tape.gradient(loss, model.trainable_variables)

        def replica_step(inputs, targets):
            optimizer.apply(replica_gradients(inputs, targets), model.trainable_variables)

        @tf.function
        def train_step(batch):
            strategy.run(replica_step, args=batch)

        dataset = tf.data.Dataset.from_tensor_slices((tuple(xs), y)).batch(GLOBAL_BATCH)
        for batch in strategy.experimental_distribute_dataset(dataset):
            train_step(batch)
    weights = [v.numpy() for v in model.trainable_variables]
    per_replica = [
        (path, [[r.numpy() for r in strategy.experimental_local_results(v.value)] for v in pair])
        for path, pair in _moving_variables(model)
    ]
    return weights, per_replica


def _max_diff(a, b):
    import numpy as np

    pairs = zip(a, b, strict=True)
    return float(max(np.max(np.abs(np.asarray(u) - np.asarray(w))) for u, w in pairs))


def _compare(weights, per_replica, expected_weights, expected_stats, global_stats):
    """Differences of a distributed step from its expected single-device values.

    `expected_stats[r]` are the statistics replica r should hold; `global_stats` the full
    batch's on one device.
    """
    report = {"weights_error": _max_diff(weights, expected_weights), "bn": {}}
    for index, (path, pair) in enumerate(per_replica):
        replicas = len(pair[0])
        report["bn"][path] = {
            "stats_error": max(
                _max_diff([pair[0][r], pair[1][r]], expected_stats[r][index])
                for r in range(replicas)
            ),
            "vs_single_device": min(
                _max_diff([pair[0][r], pair[1][r]], global_stats[index]) for r in range(replicas)
            ),
        }
    return report


def run_mirrored(out_path, xla):
    strategy = _configure_two_cpus()
    import keras
    import numpy as np

    configs = _bn_holding_configs()
    rng = np.random.default_rng(0)
    half = GLOBAL_BATCH // 2
    xs = []
    for _, _, shape in configs:
        x = rng.normal(size=(GLOBAL_BATCH, *shape[1:])).astype("float32")
        x[half:] = 2.5 * x[half:] + 1.0  # the replicas see different statistics
        xs.append(x)
    y = rng.normal(size=(GLOBAL_BATCH, 2)).astype("float32")

    keras.utils.set_random_seed(0)
    model = _branch_model(configs, synchronized=False)
    # Zero-initialised weights (SRM's) would feed the BNs constants; perturb every weight.
    for variable in model.trainable_variables:
        value = variable.numpy()
        variable.assign(value + rng.normal(scale=0.3, size=value.shape).astype(value.dtype))
    initial = model.get_weights()

    whole = slice(0, GLOBAL_BATCH)
    shards = [slice(0, half), slice(half, GLOBAL_BATCH)]
    global_weights, (global_stats,) = _reference(configs, initial, xs, y, [whole])
    local_weights, local_stats = _reference(configs, initial, xs, y, shards)

    results = {"layers": [name for name, _, _ in configs], "scenarios": {}}
    for synchronized in (True, False):
        key = "sync" if synchronized else "local"
        started = time.perf_counter()
        try:
            weights, per_replica = _distributed_step(
                strategy, configs, synchronized, xla, initial, xs, y
            )
        except Exception as error:  # reported; the test decides what is acceptable
            results["scenarios"][key] = {"error": f"{type(error).__name__}: {error}"}
            continue
        if synchronized:
            report = _compare(
                weights, per_replica, global_weights, [global_stats] * 2, global_stats
            )
        else:
            report = _compare(weights, per_replica, local_weights, local_stats, global_stats)
        report["seconds"] = round(time.perf_counter() - started, 2)
        results["scenarios"][key] = report
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


# --- MultiWorkerMirroredStrategy with BackupAndRestore ---------------------------------------


def _srm_model():
    import keras

    import keras_recalib as kr

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(8, 1)(inputs)
    x = kr.StyleRecalibration(synchronized=True, kernel_initializer="glorot_uniform")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def run_multiworker(args):
    import tensorflow as tf

    # Before anything else touches TF: the strategy starts this worker's collective server.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    import numpy as np

    task = strategy.cluster_resolver.task_id

    def log(**event):
        with open(args.log, "a") as f:
            f.write(json.dumps({**event, "time": round(time.time(), 3)}) + "\n")

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            log(event="begin", epoch=epoch)

        def on_epoch_end(self, epoch, logs=None):
            log(event="end", epoch=epoch)
            if args.hang_after is not None and epoch == args.hang_after:
                log(event="hang", epoch=epoch)
                time.sleep(3600)  # a lost worker: the test kills it here

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    samples, steps_per_epoch = 16, 16 // GLOBAL_BATCH
    x = rng.normal(size=(samples, 4, 4, 3)).astype("float32")
    y = rng.normal(size=(samples, 2)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = strategy.experimental_distribute_dataset(dataset.with_options(options))

    with strategy.scope():
        model = _srm_model()
        # compile() only attaches the optimizer, so that backups hold its state too.
        model.compile(keras.optimizers.SGD(0.05))
        model.optimizer.build(model.trainable_variables)

    # Keras 3's model.fit cannot run multi-worker (keras-team/keras#20585), so a short loop
    # drives the same callbacks.
    @tf.function
    def train_step(batch):
        def replica_step(inputs, targets):
            with tf.GradientTape() as tape:
                loss = _sum_loss(targets, model(inputs, training=True))
            model.optimizer.apply(tape.gradient(loss, model.trainable_variables))

        strategy.run(replica_step, args=batch)

    # Keras' BackupAndRestore is not multi-worker aware: every worker writes its own copy
    # (they hold the same state), so two workers never write one file.
    backup = keras.callbacks.BackupAndRestore(os.path.join(args.backup, f"worker-{task}"))
    # BackupAndRestore first, so an epoch is logged as ended only once it is backed up.
    callbacks = keras.callbacks.CallbackList([backup, EpochLog()], model=model)
    callbacks.on_train_begin()  # restores weights and optimizer state from the last backup
    first_epoch = int(model.optimizer.iterations.numpy()) // steps_per_epoch
    for epoch in range(first_epoch, args.epochs):
        callbacks.on_epoch_begin(epoch)
        for batch in dataset:
            train_step(batch)
        callbacks.on_epoch_end(epoch)
    callbacks.on_train_end()
    log(event="done", iterations=int(model.optimizer.iterations.numpy()))
    if args.weights and task == 0:
        np.savez(args.weights, *[v.numpy() for v in model.weights])


# --- Figures for docs/distributed.md ---------------------------------------------------------


def run_measure():
    """Moving variance of SRM's BN: synchronized vs not, per-replica batch 4, 8 and 32.

    A: train from the same initial weights for 2 epochs on two replicas and on one device
       (the same global batches); relative difference of the moving variance (replica 0's
       copy, the one get_weights and model.save read) from the single-device run's.
    B: with fixed trained weights (SGD with learning rate 0, 3 epochs of updates to the
       moving statistics only), the moving variance against the variance of the BN's input
       over the whole training set, i.e. what inference should divide by.
    """
    strategy = _configure_two_cpus()
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_recalib as kr

    rng = np.random.default_rng(0)
    n = 1024
    labels = rng.integers(0, 10, size=n)
    # Images whose per-image contrast and brightness vary, as natural images' styles do.
    x = rng.normal(size=(n, 8, 8, 3)) * rng.uniform(0.5, 2.0, (n, 1, 1, 1))
    x = (x + labels[:, None, None, None] * 0.1 + rng.normal(size=(n, 1, 1, 3))).astype("float32")
    y = labels.astype("int32")

    def build(synchronized, distributed, learning_rate, weights=None):
        with strategy.scope() if distributed else tf.device("/cpu:0"):
            keras.utils.set_random_seed(1)
            inputs = keras.Input((8, 8, 3))
            h = keras.layers.Conv2D(16, 3, padding="same")(inputs)
            h = kr.StyleRecalibration(synchronized=synchronized, name="srm")(h)
            h = keras.layers.GlobalAveragePooling2D()(h)
            model = keras.Model(inputs, keras.layers.Dense(10)(h))
            if weights is None:  # SRM's zero init would feed its BN constants
                cfc = model.get_layer("srm").cfc
                cfc.assign(rng.normal(scale=0.5, size=cfc.shape).astype("float32"))
            else:
                model.set_weights(weights)
            model.compile(
                keras.optimizers.SGD(learning_rate),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=False,
            )
        return model

    def moving_variance(model, distributed):
        variable = model.get_layer("srm").bn.moving_variance
        if distributed:
            variable = strategy.experimental_local_results(variable.value)[0]
        return variable.numpy()

    def population_variance(model):
        srm = model.get_layer("srm")
        features = keras.Model(model.inputs, srm.input).predict(x, batch_size=256, verbose=0)
        mean, std = srm.style_features(features)
        w = srm.cfc.numpy()
        return np.var(mean.numpy() * w[:, 0] + std.numpy() * w[:, 1], axis=0)

    def relative(a, b):
        return float(np.mean(np.abs(a - b) / b))

    rows = []
    initial = build(False, False, 0.0).get_weights()
    for per_replica in (4, 8):
        single = build(False, False, 0.05, initial)
        single.fit(x, y, batch_size=2 * per_replica, epochs=2, shuffle=False, verbose=0)
        for synchronized in (True, False):
            model = build(synchronized, True, 0.05, initial)
            model.fit(x, y, batch_size=2 * per_replica, epochs=2, shuffle=False, verbose=0)
            difference = relative(moving_variance(model, True), moving_variance(single, False))
            rows.append(("A", per_replica, synchronized, difference))

    trained = build(False, False, 0.05, initial)
    trained.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    weights = trained.get_weights()
    population = population_variance(trained)
    for per_replica in (4, 8, 32):
        for synchronized in (True, False, None):  # None: one device, the global batch
            model = build(bool(synchronized), synchronized is not None, 0.0, weights)
            model.fit(x, y, batch_size=2 * per_replica, epochs=3, shuffle=False, verbose=0)
            estimate = moving_variance(model, synchronized is not None)
            rows.append(
                (
                    "B",
                    per_replica,
                    synchronized,
                    relative(estimate, population),
                    float(np.mean(estimate / population)),
                )
            )
    for row in rows:
        print(json.dumps(row))
    return rows


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    mirrored = sub.add_parser("mirrored")
    mirrored.add_argument("out")
    mirrored.add_argument("--xla", action="store_true")
    worker = sub.add_parser("multiworker")
    worker.add_argument("--log", required=True)
    worker.add_argument("--backup", required=True)
    worker.add_argument("--epochs", type=int, required=True)
    worker.add_argument("--hang-after", type=int)
    worker.add_argument("--weights")
    sub.add_parser("measure")
    args = parser.parse_args(argv)
    if args.mode == "mirrored":
        run_mirrored(args.out, args.xla)
    elif args.mode == "multiworker":
        run_multiworker(args)
    else:
        run_measure()


if __name__ == "__main__":
    sys.exit(main())
