"""File and folder names of an artifact (DESIGN §5), in one place."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STRUCTURE_NAME = "structure.json"
TRAINING_ARGS_NAME = "training_args.json"  # SpecialistTrainingArguments of the run that trained the adapter
HEATMAP_NAME = "structure.png"
README_NAME = "README.md"
LORA_DIR = "lora"
CARD_MARKER = "<!-- hf_specialist:generated-card -->"
# transformers would take a folder holding this file for a PEFT adapter; never write it at an artifact's top
FORBIDDEN_NAMES = ("adapter_config.json",)
CHECKPOINT_PREFIX = "checkpoint-"
LAMBDA_PATH_DIR = "lambda-path"  # checkpoints of the lambdas trained at once
