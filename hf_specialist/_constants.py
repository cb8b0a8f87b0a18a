"""File and folder names of an artifact (DESIGN §5), in one place."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STRUCTURE_NAME = "structure.json"
TRAINING_ARGS_NAME = "training_args.json"  # SpecialistTrainingArguments of the run that trained the adapter
TRAINING_METRICS_NAME = "training_metrics.json"  # that run's held-out metrics of the kept model (the card's table)
HEATMAP_NAME = "structure.png"
README_NAME = "README.md"
LORA_DIR = "lora"
CARD_MARKER = "<!-- hf_specialist:generated-card -->"
# transformers would take a folder holding this file for a PEFT adapter; never write it at an artifact's top
FORBIDDEN_NAMES = ("adapter_config.json",)
CHECKPOINT_PREFIX = "checkpoint-"
LAMBDA_PATH_DIR = "lambda-path"  # checkpoints of the lambdas trained at once
# set by `models.load_model` on the model it returns: the revision of the base's weights where `config._commit_hash`
# has none (transformers >= 5 no longer sets it; the offline packaged models have no Hub commit); read by
# `SpecialistConfig.record_base`
BASE_REVISION_ATTRIBUTE = "_hf_specialist_revision"
