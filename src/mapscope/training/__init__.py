"""The one trainer of every neural kind (``trainer.py``), the settings it takes (``config.py``),
the learning-rate schedules and what a kind supplies (``task.py``)."""
