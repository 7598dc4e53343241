"""Export of a trained world model as a `WorldModelPipeline` folder with a model card, and push to the Hub."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData, create_repo, upload_folder


logger = logging.getLogger(__name__)


def _is_hub_id(name: str | None) -> bool:
    """`owner/name` that is not a local path."""
    return bool(name) and name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


CARD_TEMPLATE = """---
{card_data}
---

# {title}

An Argos latent world model: a block-causal space-time transformer (Dreamer 4 style) that predicts future frozen
DINOv2 latents (and proprioception) from actions, trained with {objective}. It was trained for {steps} steps with
`examples/train_world_model.py`.

## Usage

```python
from argos_wm import WorldModelPipeline

pipeline = WorldModelPipeline.from_pretrained("{repo_id}")
```

## Training data

{datasets}

## Evaluation (held-out episodes, latent space, per future frame)

{metrics}

## Training configuration

```yaml
{config}
```
"""


def _metrics_table(metrics: dict[str, list[float]]) -> str:
    """A markdown table with one row per metric and one column per future frame."""
    if not metrics:
        return "No held-out evaluation was run."
    horizon = max(len(values) for values in metrics.values())
    header = "| metric | " + " | ".join(f"t+{k + 1}" for k in range(horizon)) + " |"
    rows = [header, "|" + "---|" * (horizon + 1)]
    rows += [f"| {name} | " + " | ".join(f"{value:.4f}" for value in values) + " |" for name, values in metrics.items()]
    return "\n".join(rows)


def write_model_card(
    folder: str | Path,
    repo_id: str,
    training_config: dict,
    metrics: dict[str, list[float]],
    train_steps: int,
) -> Path:
    """Writes `README.md` in `folder`: Hub metadata (datasets, base model, tags), the data mixture, metrics, config."""
    datasets = training_config.get("datasets", [])
    hub_datasets = [str(entry["root"]) for entry in datasets if _is_hub_id(str(entry["root"]))]
    base_model = training_config.get("pretrained_model_name_or_path")
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="argos_wm",
        pipeline_tag="robotics",
        tags=["world-model", "dinov2", "diffusion-forcing", "shortcut-forcing", "argos_wm"],
        datasets=hub_datasets or None,
        base_model=base_model if _is_hub_id(base_model) else None,
    )
    mixture = "\n".join(
        f"- `{entry.get('name') or entry['root']}` ({entry['root']}): weight {entry.get('weight', 1.0)}, "
        f"fps {entry.get('fps', 'native')}, actions used {100 * float(entry.get('use_action_probability', 1.0)):.0f}% of the time"
        for entry in datasets
    )
    card = ModelCard(
        CARD_TEMPLATE.format(
            card_data=card_data.to_yaml(),
            title=repo_id.split("/")[-1],
            objective=training_config.get("objective", "shortcut_forcing").replace("_", " "),
            steps=train_steps,
            repo_id=repo_id,
            datasets=mixture,
            metrics=_metrics_table(metrics),
            config=yaml.safe_dump(training_config, sort_keys=False).strip(),
        )
    )
    path = Path(folder) / "README.md"
    card.save(path)
    return path


def export_pipeline(
    pipeline,
    folder: str | Path,
    repo_id: str,
    training_config: dict,
    metrics: dict[str, list[float]],
    train_steps: int,
) -> Path:
    """Saves `pipeline` (a `WorldModelPipeline`) with `save_pretrained` (safetensors) and writes its model card."""
    folder = Path(folder)
    pipeline.save_pretrained(folder, safe_serialization=True)
    write_model_card(folder, repo_id, training_config, metrics, train_steps)
    logger.info("Exported the pipeline to %s", folder)
    return folder


def push_pipeline_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Creates (if needed) the model repo `repo_id` and uploads `folder`; returns the repo URL."""
    url = create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload Argos world model pipeline")
    logger.info("Pushed %s to %s", folder, url)
    return str(url)


__all__ = ["export_pipeline", "push_pipeline_to_hub", "write_model_card"]
