"""`python -m train tokenizer|vq|pretrain|medim|all --config PRESET_OR_YAML [key.sub=value ...]
[--resume latest] [--init-from DIR]`.

`all` runs tokenizer, vq, then pretrain (when pretrain.max_steps or pretrain.max_minutes is set; the medim stage
then starts from its export), then medim."""

from __future__ import annotations

import argparse
import sys

from train.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("stage", choices=["tokenizer", "vq", "pretrain", "medim", "all"])
    parser.add_argument("--config", required=True, help="a preset name (train/configs/*.yaml) or a YAML file")
    parser.add_argument("--resume", help="'latest' or a checkpoint directory (medim stage)")
    parser.add_argument(
        "--init-from",
        help="warm start: a pipeline directory (e.g. assets/default) whose weights and tokenizers this run "
        "starts from (same as model.init_from=DIR)",
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 output_dir=runs/x")
    args = parser.parse_intermixed_args(argv)
    try:
        overrides = list(args.overrides)
        if args.init_from:
            overrides.append(f"model.init_from={args.init_from}")
        config = load_config(args.config, overrides)
        if args.stage == "all" and config.pretrain.enabled and config.model.init_from:
            raise ValueError(
                "pretrain.* and model.init_from both choose the medim stage's start: set one of them"
            )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    from train.stages import medim, pretrain, tokenizer, vq

    if args.stage in ("tokenizer", "all"):
        tokenizer.run(config)
    if args.stage in ("vq", "all"):
        vq.run(config)
    if args.stage == "pretrain" or (args.stage == "all" and config.pretrain.enabled):
        try:
            exported = pretrain.run(config, resume=args.resume if args.stage == "pretrain" else None)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if args.stage == "all":
            config.model.init_from = str(exported)
    if args.stage == "medim" and config.pretrain.enabled and not config.model.init_from:
        # the medim stage of a pretrained recipe starts from (and, resumed, keeps the chain of) its pretraining
        if pretrain.export_dir(config).is_dir():
            config.model.init_from = str(pretrain.export_dir(config))
    if args.stage in ("medim", "all"):
        medim.run(config, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
