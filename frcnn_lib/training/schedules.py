"""Learning-rate schedules the presets need beyond Keras' own: linear warmup.

``LinearWarmup(schedule, warmup_steps, warmup_factor)`` multiplies ``schedule(step)`` by a
factor that rises linearly from ``warmup_factor`` at step 0 to 1 at ``warmup_steps``, then
stays 1 -- Detectron2's ``WarmupMultiStepLR`` with ``WARMUP_METHOD = "linear"``::

    lr(step) = schedule(step) * (warmup_factor + (1 - warmup_factor) * min(step / warmup_steps, 1))
"""
import keras


@keras.saving.register_keras_serializable(package="frcnn")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule`` (a float or a ``LearningRateSchedule``) with a linear warmup."""

    def __init__(self, schedule, warmup_steps, warmup_factor=0.001):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        base = self.schedule(step) if callable(self.schedule) else self.schedule
        progress = keras.ops.minimum(step / max(self.warmup_steps, 1), 1.0)
        return base * (self.warmup_factor + (1.0 - self.warmup_factor) * progress)

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps,
                "warmup_factor": self.warmup_factor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
