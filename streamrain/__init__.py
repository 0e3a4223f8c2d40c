"""streamrain: remove rain from video files, camera streams and dashcam folders."""

from streamrain.zoo import list_models, load_model

__all__ = ["load_model", "list_models"]
__version__ = "0.1.0"
