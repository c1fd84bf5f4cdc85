"""The error type of the learning package."""


class LearningError(ValueError):
    """Bad learning configuration or input: names the parameter, layer or shape that is wrong."""
