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
    file, weights whose shapes are not the config's, or (with `complete_checkpoints`) weights missing from the file.
    """

    # Set on a transformers model class whose checkpoints must hold every weight of their own config: loaded without
    # config changes, a weight missing from the file (an incomplete file, or one of another version) raises instead of
    # starting from its initial value. Changed by keyword (say `num_agent_tokens=1`), the new weights start fresh.
    complete_checkpoints = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if cls.complete_checkpoints and not args and not _changes_config(cls, kwargs):
            model, info = cls._load(pretrained_model_name_or_path, *args, **kwargs, output_loading_info=True)
            wrong = {kind: sorted(info[kind]) for kind in ("missing_keys", "unexpected_keys") if info[kind]}
            if wrong:
                raise ValueError(
                    f"the weights of {os.fspath(pretrained_model_name_or_path)!r} do not match its own config: "
                    f"{wrong}. The file is incomplete or was saved by another version of the model."
                )
            return model
        return cls._load(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def _load(cls, pretrained_model_name_or_path, *args, **kwargs):
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


# keyword arguments of `from_pretrained` that say how to load, not what the model is
_LOADING_KWARGS = {
    "attn_implementation", "cache_dir", "device_map", "dtype", "force_download", "local_files_only", "revision",
    "subfolder", "token", "torch_dtype", "trust_remote_code", "use_safetensors",
}  # fmt: skip


def _changes_config(cls, kwargs: dict) -> bool:
    """Whether `from_pretrained(**kwargs)` builds another model than the saved config: a `config` given, or a keyword
    naming a config field."""
    if "config" in kwargs or kwargs.get("output_loading_info"):
        return True
    fields = cls.config_class().to_dict()
    return any(key in fields for key in kwargs if key not in _LOADING_KWARGS)
