"""``ecgaug convert``: DiffuSETS' published checkpoints → an ecgaug model folder (safetensors)."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert the published DiffuSETS weights into an ecgaug model folder",
        description="Read vae_model.pth and unet_all.pth (Hugging Face Laiyf/DiffuSETS) with weights_only loading and "
                    "write a folder that DiffuSETSPipeline.from_pretrained reads (safetensors + configs).",
    )
    parser.add_argument("upstream", help="Hugging Face repo id (Laiyf/DiffuSETS: downloaded into the hub cache; "
                                         "HF_HUB_OFFLINE=1 uses the cache only) or a folder with vae_model.pth and unet_all.pth")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--revision", default=None, help="with a repo id: branch, tag or commit hash to pin")
    parser.add_argument("--text_encoder", default="openai", choices=["openai", "table"],
                        help="how the folder says to embed reports (default OpenAI text-embedding-ada-002, as published)")
    parser.add_argument("--text_table", type=Path, default=None,
                        help="with --text_encoder table: path of ptbxl_text_embed.csv (default: the upstream's own)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ecgaug.models.convert import UPSTREAM_TEXT_TABLE, upstream_file
    from ecgaug.pipeline import DiffuSETSPipeline

    try:
        pipe = DiffuSETSPipeline.from_upstream(args.upstream, revision=args.revision, text_encoder=_NoTextEncoder())
        spec = {"type": "openai", "model": "text-embedding-ada-002"}
        if args.text_encoder == "table":
            table = args.text_table or upstream_file(args.upstream, UPSTREAM_TEXT_TABLE, revision=args.revision)
            spec = {"type": "table", "path": str(Path(table).resolve())}
    except (FileNotFoundError, ValueError) as error:
        print(f"ecgaug convert: error: {error}", file=sys.stderr)
        return 2
    pipe.save_pretrained(args.output_dir, text_encoder_spec=spec)
    print(f"Converted {args.upstream} → {args.output_dir} ({pipe.model_id})")
    return 0


class _NoTextEncoder:
    """Conversion embeds nothing; stands in for the text encoder so no API key is needed."""

    name = "none"
    embedding_dim = 1536
