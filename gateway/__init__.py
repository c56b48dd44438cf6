"""tfs-gateway: an image gateway in front of TensorFlow Serving.

The package never imports TensorFlow; it speaks TF Serving's wire protocol through its own
message definitions (``protos/tfserving``, generated into ``gateway._proto``).
"""

__version__ = "0.1.0"
