"""`from_pretrained` as the design asks of every saved part: safetensors only, and clear errors for what is missing or
damaged."""

import os

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError


class SafetensorsLoadingMixin:
    """Put before a transformers `PreTrainedModel`, a diffusers `ModelMixin` or a `DiffusionPipeline` in the bases.

    Its `from_pretrained` loads safetensors only (`use_safetensors=True` unless given: a folder holding only pickled
    `.bin` weights raises), takes a `str` or a `Path`, raises `FileNotFoundError` for a local path that does not exist
    (rather than asking the Hub for it) or for a file missing from a local folder, and `ValueError` for a damaged
    file or weights whose shapes are not the config's.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        name = os.fspath(pretrained_model_name_or_path)
        if not os.path.exists(name):
            try:
                validate_repo_id(name)
            except HFValidationError:
                raise FileNotFoundError(
                    f"pretrained_model_name_or_path {name!r} is neither an existing folder nor a Hub repo id "
                    "('namespace/name')."
                ) from None
        kwargs.setdefault("use_safetensors", True)
        try:
            return super().from_pretrained(name, *args, **kwargs)
        except SafetensorError as error:
            raise ValueError(
                f"a safetensors file of {name!r} is damaged or truncated ({error}); save or download it again."
            ) from error
        except OSError as error:  # transformers and diffusers say "missing" and "damaged" with OSError
            if isinstance(error, FileNotFoundError) or not os.path.isdir(name):
                raise
            message = str(error)
            if "no file named" in message:
                raise FileNotFoundError(f"{message} (loading {name!r})") from error
            if "Unable to load weights" in message or "not a valid JSON file" in message:
                raise ValueError(f"{message} (loading {name!r}): the file is damaged; save it again.") from error
            raise
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            raise ValueError(
                f"the weights of {name!r} do not have the shapes its config gives (the load report above lists "
                "them): the config and the weights come from different models."
            ) from error
