"""Real pretrained models: GGUF import into HF folders, and the packaged models svgap knows by name."""
