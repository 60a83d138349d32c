"""The one error of the weights package."""


class IncompatibleWeightsError(ValueError):
    """A state dict or a weights file does not fit the model it is for, or
    is not the file its name or the release table promises."""
