"""MeDiM's training package: `python -m train tokenizer|vq|medim|all --config FILE [key=value ...]`.

Runs on one CPU or many GPUs through `accelerate launch`. Each stage writes a directory under the run's
`output_dir` that the next stage (and `MeDiMPipeline.from_pretrained`) reads.
"""
