"""Named errors of the ML core. The backend translates them to HTTP answers in one place."""


class ModelInputError(ValueError):
    """Input arrays or arguments have the wrong shape, dtype, size or values."""


class UnknownEncoderError(ValueError):
    """The encoder name is not one this project can build."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be loaded (no package, no network)."""
