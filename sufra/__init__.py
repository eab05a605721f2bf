"""sufra: build fine-grained food-recognition datasets for under-represented cuisines."""

__version__ = "0.1.0"
