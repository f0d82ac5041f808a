"""SparkVSR Studio: keyframe-guided video super-resolution.

The package imports with no side effects: no models are loaded, no files are written and no
network is touched until a function is called.
"""

__version__ = "0.1.0"
